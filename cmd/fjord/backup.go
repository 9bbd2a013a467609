package main

import (
	"fmt"
	"path/filepath"

	"github.com/fjordhq/fjord/admin"
	"github.com/spf13/cobra"
)

func newBackupCmd(g *globals) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "backup --to DIR",
		Short: "Write a consistent backup of the running server's data to a new directory",
		Long: `backup asks the running server for a consistent snapshot of its data dir,
written to DIR (which must not exist yet; its parent must): the database,
every repo with exactly the refs the database records at that instant, the
mirror and push mirror credentials, the Helm repositories' kept chart
archives and last indexes (DATA/helm) and the SSH host key. Pushes and syncs go
on meanwhile. The backup holds secrets: it is written with modes 0700/0600,
into a temp dir beside DIR renamed into place when complete.

Restore it with fjord restore --from DIR --data NEWDIR.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("give the backup directory with --to DIR")
			}
			// The server resolves the path, so it must not depend on
			// this command's working directory.
			abs, err := filepath.Abs(to)
			if err != nil {
				return fmt.Errorf("--to %s: %w", to, err)
			}
			out := cmd.ErrOrStderr()
			m, err := admin.NewClient(g.dataDir).Backup(cmd.Context(), abs, func(msg string) { fmt.Fprintln(out, msg) })
			if err != nil {
				return err
			}
			refs := 0
			for _, r := range m.Repos {
				refs += len(r.Refs)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s: %d repos, %d refs, %d credential files, %d helm files, host key %v\n", abs, len(m.Repos), refs, m.Credentials, m.HelmFiles, m.HostKey)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "backup directory to create (must not exist)")
	return cmd
}
