package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
	"github.com/spf13/cobra"
)

func newAppCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "GitOps applications: Argo CD Application files applied to the cluster",
		Long: `app manages applications: a path of a fjord repo, rendered with kustomize
and applied to the cluster of fjord serve's kubeconfig by server-side apply.
Applications are written in Argo CD's Application format; fields fjord does
not support are refused by name.`,
	}

	applyCmd := newAppApplyCmd(g)
	validateCmd := newAppValidateCmd()
	listCmd := newAppListCmd(g)
	getCmd := newAppGetCmd(g)

	diffCmd := &cobra.Command{
		Use:   "diff NAME",
		Short: "Show what a sync would change (server-side dry-run, unified diff); exit 1 when it differs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := admin.NewClient(g.dataDir).DiffApp(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if d == "" {
				return nil
			}
			fmt.Fprint(cmd.OutOrStdout(), d)
			// Like diff(1) and kubectl diff: 1 means "differs".
			return exitError{code: 1, err: errors.New("the cluster differs from git")}
		},
	}

	var (
		syncPrune bool
		syncOut   string
	)
	syncCmd := &cobra.Command{
		Use:   "sync NAME",
		Short: "Sync an application now (also one without an automated policy)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := admin.NewClient(g.dataDir).SyncApp(cmd.Context(), args[0], syncPrune)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), syncOut, rec); done {
				return err
			}
			printAppSync(cmd.OutOrStdout(), rec)
			if rec.Error != "" {
				return fmt.Errorf("sync of %s failed: %s", args[0], rec.Error)
			}
			return nil
		},
	}
	syncCmd.Flags().BoolVar(&syncPrune, "prune", false, "delete objects git no longer declares, even if the app's policy does not prune")
	addOutputFlag(syncCmd, &syncOut)

	var (
		histOut string
		histN   int
	)
	historyCmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show an application's recent syncs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := admin.NewClient(g.dataDir).AppHistory(cmd.Context(), args[0], histN)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), histOut, h); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "START\tTRIGGER\tCOMMIT\tDURATION\tCHANGED\tUNCHANGED\tERROR")
			for _, r := range h {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.Start.Local().Format(time.DateTime), r.Trigger, shortCommit(r.Revision),
					r.Duration.Round(time.Millisecond), len(r.Changes), r.Unchanged, oneLine(r.Error, 80))
			}
			return tw.Flush()
		},
	}
	historyCmd.Flags().IntVarP(&histN, "number", "n", 20, "syncs to show (0: all kept)")
	addOutputFlag(historyCmd, &histOut)

	var cascade bool
	deleteCmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an application; --cascade (or the resources finalizer) deletes its objects from the cluster too",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := admin.NewClient(g.dataDir)
			// The app's own finalizer may cascade the delete too.
			how := "--cascade"
			if a, err := c.App(cmd.Context(), args[0]); err == nil {
				if app, err := reconciler.ParseApplication([]byte(a.Manifest)); err == nil {
					if fin, policy := app.DeleteCascade(); fin && !cascade {
						cascade, how = true, fmt.Sprintf("its finalizer, %s propagation", strings.ToLower(string(policy)))
					}
				}
			}
			objs, err := c.DeleteApp(cmd.Context(), args[0], cascade)
			if err != nil {
				return err
			}
			for _, o := range objs {
				fmt.Fprintln(cmd.OutOrStdout(), o)
			}
			if cascade {
				fmt.Fprintf(cmd.OutOrStdout(), "app %s deleted with its objects (%s)\n", args[0], how)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "app %s deleted; its objects stay in the cluster (label %s=%s)\n", args[0], reconciler.LabelApp, args[0])
			}
			return nil
		},
	}
	deleteCmd.Flags().BoolVar(&cascade, "cascade", false, "also delete the objects the app applied")

	cmd.AddCommand(applyCmd, validateCmd, listCmd, getCmd, diffCmd, syncCmd, historyCmd, deleteCmd)
	return cmd
}

func printAppSync(w io.Writer, rec storage.AppSync) {
	for _, c := range rec.Changes {
		line := c.ID + " " + c.Action
		if c.Reason != "" {
			line += " (" + c.Reason + ")"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "synced %s in %s: %d changed, %d unchanged\n", shortCommit(rec.Revision), rec.Duration.Round(time.Millisecond), len(rec.Changes), rec.Unchanged)
}

func shortCommit(commit string) string {
	if commit == "" {
		return "-"
	}
	return short(commit)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func driftLine(d *storage.DriftEvent) string {
	if d == nil {
		return "-"
	}
	return fmt.Sprintf("%s %s %s by %s", ago(d.Time), d.Action, d.Object, orDash(d.Manager))
}
