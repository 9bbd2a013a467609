package main

import (
	"fmt"
	"time"

	"github.com/fjordhq/fjord/admin"
	"github.com/spf13/cobra"
)

func newRepoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "repo", Short: "Create, list and delete hosted repositories"}

	var create admin.CreateRepoRequest
	createCmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an empty repository",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			create.Name = args[0]
			r, err := admin.NewClient(g.dataDir).CreateRepo(cmd.Context(), create)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created repo %s\n", r.Name)
			return nil
		},
	}
	createCmd.Flags().BoolVar(&create.AnonRead, "anon-read", false, "let clients without a registered key fetch this repo")
	createCmd.Flags().StringVar(&create.Description, "description", "", "free text shown by repo list")

	var output string
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List repositories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repos, err := admin.NewClient(g.dataDir).Repos(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, repos); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tHEAD\tCOMMIT\tREFS\tANON READ\tCREATED\tDESCRIPTION")
			for _, r := range repos {
				commit := "(empty)"
				if r.HeadHash != "" {
					commit = r.HeadHash[:12]
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%s\t%s\n", r.Name, r.Head, commit, r.Refs, r.AnonRead, r.Created.Local().Format(time.DateTime), oneLine(r.Description, 60))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(listCmd, &output)

	var (
		anon bool
		desc string
	)
	updateCmd := &cobra.Command{
		Use:   "update NAME [--anon-read=true|false] [--description TEXT]",
		Short: "Change a repository's settings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req admin.UpdateRepoRequest
			if cmd.Flags().Changed("anon-read") {
				req.AnonRead = &anon
			}
			if cmd.Flags().Changed("description") {
				req.Description = &desc
			}
			if req.AnonRead == nil && req.Description == nil {
				return fmt.Errorf("nothing to change: give --anon-read=true|false or --description TEXT")
			}
			r, err := admin.NewClient(g.dataDir).UpdateRepo(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "repo %s: anonymous read %v, description %q\n", r.Name, r.AnonRead, r.Description)
			return nil
		},
	}
	updateCmd.Flags().BoolVar(&anon, "anon-read", false, "let clients without a registered key fetch this repo")
	updateCmd.Flags().StringVar(&desc, "description", "", "free text shown by repo list")

	var force bool
	deleteCmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a repository and everything in it (refused while an app uses it, unless --force)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).DeleteRepo(cmd.Context(), args[0], force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted repo %s\n", args[0])
			return nil
		},
	}
	deleteCmd.Flags().BoolVar(&force, "force", false, "delete even when apps use the repo (their syncs fail until it exists again)")
	cmd.AddCommand(createCmd, listCmd, updateCmd, deleteCmd)
	return cmd
}
