package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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

	var applyFile, applyOut string
	applyCmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update an application from an Argo CD Application file (- for stdin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var (
				b   []byte
				err error
			)
			if applyFile == "-" {
				b, err = io.ReadAll(cmd.InOrStdin())
			} else {
				b, err = os.ReadFile(applyFile)
			}
			if err != nil {
				return fmt.Errorf("-f: %w", err)
			}
			a, err := admin.NewClient(g.dataDir).ApplyApp(cmd.Context(), b)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), applyOut, a); done {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "app %s applied: %s, %s, commit %s\n", a.Name, a.Status.Sync, a.Status.Health, shortCommit(a.Status.SyncedCommit))
			if a.Status.Sync == "Error" {
				// Stored, but the cluster does not match git: CI should see
				// a failure.
				return fmt.Errorf("app %s is stored, but its sync failed (fix git and push, or `fjord app sync %s`): %s", a.Name, a.Name, a.Status.Error)
			}
			if a.Status.Error != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "warning: %s\n", a.Status.Error)
			}
			return nil
		},
	}
	applyCmd.Flags().StringVarP(&applyFile, "filename", "f", "", "Application file (required)")
	applyCmd.MarkFlagRequired("filename")
	addOutputFlag(applyCmd, &applyOut)

	var listOut string
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List applications: repo, revision, synced commit, sync status, health, last drift",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			apps, err := admin.NewClient(g.dataDir).Apps(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), listOut, apps); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tREPO\tREVISION\tSYNCED\tSYNC\tHEALTH\tLAST DRIFT\tERROR")
			for _, a := range apps {
				rev := "HEAD"
				if app, err := reconciler.ParseApplication([]byte(a.Manifest)); err == nil {
					rev = app.Revision()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.Status.Repo, rev, shortCommit(a.Status.SyncedCommit),
					a.Status.Sync, a.Status.Health, driftLine(a.Status.LastDrift), oneLine(a.Status.Error, 60))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(listCmd, &listOut)

	var getOut string
	getCmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show an application: status, objects and their health, orphans, recent drift",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := admin.NewClient(g.dataDir).App(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), getOut, a); done {
				return err
			}
			w := cmd.OutOrStdout()
			st := a.Status
			fmt.Fprintf(w, "Name:          %s\nRepo:          %s\nRevision:      %s\nSynced commit: %s (%s)\nSync:          %s\nHealth:        %s\n",
				a.Name, st.Repo, st.Revision, st.SyncedCommit, ago(st.LastSynced), st.Sync, st.Health)
			if st.Error != "" {
				fmt.Fprintf(w, "Error:         %s\n", st.Error)
			}
			if len(st.Objects) > 0 {
				fmt.Fprintln(w, "\nObjects:")
				tw := table(w)
				for _, o := range st.Objects {
					fmt.Fprintf(tw, "  %s\t%s\t%s\n", o.ID, o.Status, oneLine(o.Message, 80))
				}
				tw.Flush()
			}
			if len(st.Orphans) > 0 {
				fmt.Fprintln(w, "\nOrphans (in the cluster, no longer in git; `fjord app sync NAME --prune` deletes them):")
				for _, o := range st.Orphans {
					fmt.Fprintf(w, "  %s\n", o)
				}
			}
			if len(a.Drifts) > 0 {
				fmt.Fprintln(w, "\nDrift:")
				tw := table(w)
				for _, d := range a.Drifts {
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", d.Time.Local().Format(time.DateTime), d.Action, d.Object, driftWhat(d), orDash(d.Manager))
				}
				tw.Flush()
			}
			return nil
		},
	}
	addOutputFlag(getCmd, &getOut)

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
		Short: "Delete an application; --cascade deletes its objects from the cluster too",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			objs, err := admin.NewClient(g.dataDir).DeleteApp(cmd.Context(), args[0], cascade)
			if err != nil {
				return err
			}
			for _, o := range objs {
				fmt.Fprintln(cmd.OutOrStdout(), o)
			}
			if cascade {
				fmt.Fprintf(cmd.OutOrStdout(), "app %s deleted with its objects\n", args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "app %s deleted; its objects stay in the cluster (label %s=%s)\n", args[0], reconciler.LabelApp, args[0])
			}
			return nil
		},
	}
	deleteCmd.Flags().BoolVar(&cascade, "cascade", false, "also delete the objects the app applied")

	cmd.AddCommand(applyCmd, listCmd, getCmd, diffCmd, syncCmd, historyCmd, deleteCmd)
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

func driftWhat(d storage.DriftEvent) string {
	if d.Deleted {
		return "deleted"
	}
	return strings.Join(d.Fields, ",")
}

func driftLine(d *storage.DriftEvent) string {
	if d == nil {
		return "-"
	}
	return fmt.Sprintf("%s %s %s by %s", ago(d.Time), d.Action, d.Object, orDash(d.Manager))
}

// appsAPI adapts the reconciler to what the admin API needs.
type appsAPI struct{ r *reconciler.Reconciler }

var _ admin.Apps = appsAPI{}

func (a appsAPI) Apply(ctx context.Context, manifest []byte) (storage.App, error) {
	return a.r.Apply(ctx, manifest)
}

func (a appsAPI) Sync(ctx context.Context, name string, prune bool) (storage.AppSync, error) {
	return a.r.Sync(ctx, name, reconciler.SyncOptions{Prune: prune})
}

func (a appsAPI) Diff(ctx context.Context, name string) (string, error) { return a.r.Diff(ctx, name) }

func (a appsAPI) Delete(ctx context.Context, name string, cascade bool) ([]string, error) {
	cs, err := a.r.Delete(ctx, name, cascade)
	var out []string
	for _, c := range cs {
		line := c.Ref.String() + " " + string(c.Action)
		if c.Reason != "" {
			line += " (" + c.Reason + ")"
		}
		out = append(out, line)
	}
	return out, err
}

func (a appsAPI) IsInvalid(err error) bool { return errors.Is(err, reconciler.ErrInvalidApp) }
