package main

import (
	"fmt"
	"time"

	"github.com/fjordhq/fjord/admin"
	"github.com/spf13/cobra"
)

func newUICmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ui", Short: "The web UI on the HTTP listener (/ui/)"}
	cmd.AddCommand(newUILoginCmd(g))
	return cmd
}

func newUILoginCmd(g *globals) *cobra.Command {
	var user, output string
	c := &cobra.Command{
		Use:   "login [--user NAME]",
		Short: "Print a one-time link that logs a browser into the web UI as a fjord user",
		Long: `Print a one-time link that logs a browser into the web UI as a fjord user
(default: admin). The link works once, within ten minutes; the browser then
holds a session cookie for 12 hours. Admins see every app and may press
"sync now"; other users see the apps, mirrors and repos of the repos they
may read (fjord grant).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := admin.NewClient(g.dataDir).UILogin(cmd.Context(), user)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, l); done {
				return err
			}
			role := "read-only"
			if l.Admin {
				role = "admin"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "open this link within %s to log in as %s (%s); it works once:\n%s\n",
				time.Until(l.Expires).Round(time.Minute), l.User, role, l.URL)
			return nil
		},
	}
	c.Flags().StringVar(&user, "user", "", "the fjord user to log in as (default admin)")
	addOutputFlag(c, &output)
	return c
}
