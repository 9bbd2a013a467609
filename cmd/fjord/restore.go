package main

import (
	"fmt"

	"github.com/fjordhq/fjord/storage"
	"github.com/spf13/cobra"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "restore --from DIR --data NEWDIR",
		Short: "Make a new data directory from a backup (offline)",
		Long: `restore makes the data directory given by --data from a backup written by
fjord backup. It runs without a server and refuses a --data directory that
is not empty. It checks the backup's database (bbolt's consistency check)
and that every repo holds the refs the backup recorded before moving the
data into place. Then start fjord serve --data NEWDIR.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return fmt.Errorf("give the backup directory with --from DIR")
			}
			out := cmd.ErrOrStderr()
			m, err := storage.Restore(cmd.Context(), from, g.dataDir, &storage.RestoreOptions{
				Progress: func(msg string) { fmt.Fprintln(out, msg) },
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %d repos from %s (taken %s) into %s; start it with: fjord serve --data %s\n",
				len(m.Repos), from, m.Created.Format("2006-01-02 15:04:05 UTC"), g.dataDir, g.dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "backup directory written by fjord backup")
	return cmd
}
