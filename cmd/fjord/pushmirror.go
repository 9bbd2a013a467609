package main

import (
	"fmt"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/mirror"
	"github.com/spf13/cobra"
)

func newPushMirrorCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pushmirror", Short: "Copy hosted repos to a remote after every push (a DR copy)"}

	var (
		req                           admin.AddPushMirrorRequest
		sshKey, knownHosts, tokenFile string
	)
	addCmd := &cobra.Command{
		Use:   "add REPO --remote URL",
		Short: "Push REPO's branches and tags to URL after every accepted push, and every --interval",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Repo = args[0]
			remote, err := mirror.ParseRemote(req.Remote)
			if err != nil {
				return fmt.Errorf("--remote: %w", err)
			}
			req.Credentials, err = readCredentials(map[string]string{mirror.CredSSHKey: sshKey, mirror.CredKnownHosts: knownHosts, mirror.CredToken: tokenFile})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "pushing %s to %s ...\n", req.Repo, remote.URL)
			p, err := admin.NewClient(g.dataDir).AddPushMirror(cmd.Context(), req)
			if err != nil {
				return err
			}
			if p.LastError != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "push mirror of %s to %s added, but the first push failed (retrying with backoff): %s\n", p.Repo, p.Remote, p.LastError)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "push mirror of %s to %s added and in sync\n", p.Repo, p.Remote)
			return nil
		},
	}
	f := addCmd.Flags()
	f.StringVar(&req.Remote, "remote", "", "remote URL (required)")
	f.DurationVar(&req.Interval, "interval", mirror.DefaultPushInterval, "time between full passes")
	f.StringVar(&sshKey, "ssh-key", "", "private key file for an ssh remote")
	f.StringVar(&knownHosts, "known-hosts", "", "known_hosts file with the ssh remote's host key")
	f.StringVar(&tokenFile, "token-file", "", "file holding an access token for an https remote")
	addCmd.MarkFlagRequired("remote")

	var output string
	listCmd := &cobra.Command{
		Use:   "list [REPO]",
		Short: "List push mirrors and how their last push went",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo := ""
			if len(args) == 1 {
				repo = args[0]
			}
			ps, err := admin.NewClient(g.dataDir).PushMirrors(cmd.Context(), repo)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, ps); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "REPO\tREMOTE\tINTERVAL\tLAST SUCCESS\tFAILURES\tLAST ERROR")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", p.Repo, p.Remote, p.Interval, ago(p.LastSuccess), p.Failures, oneLine(p.LastError, 80))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(listCmd, &output)

	var remote string
	deleteCmd := &cobra.Command{
		Use:   "delete REPO --remote URL",
		Short: "Stop pushing REPO to URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).DeletePushMirror(cmd.Context(), args[0], remote); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "push mirror of %s to %s deleted\n", args[0], remote)
			return nil
		},
	}
	deleteCmd.Flags().StringVar(&remote, "remote", "", "remote URL (required)")
	deleteCmd.MarkFlagRequired("remote")

	cmd.AddCommand(addCmd, listCmd, deleteCmd)
	return cmd
}
