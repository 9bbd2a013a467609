package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// readDocs reads -f: a file, a directory or stdin, Argo CD cluster
// Secrets first, then AppProjects, so that the Applications after them
// may name them.
func readDocs(cmd *cobra.Command, path string) ([]reconciler.Document, error) {
	docs, err := reconciler.ReadDocuments(path, cmd.InOrStdin())
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("-f %s: no document in it", path)
	}
	rank := func(d reconciler.Document) int {
		switch {
		case d.Kind == "Secret" && reconciler.IsClusterSecret(d.Data):
			return 0
		case d.Kind == "AppProject":
			return 1
		}
		return 2
	}
	sort.SliceStable(docs, func(i, j int) bool { return rank(docs[i]) < rank(docs[j]) })
	return docs, nil
}

func newAppApplyCmd(g *globals) *cobra.Command {
	var file, out string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update applications (and projects, clusters) from Argo CD Application, AppProject and cluster Secret files",
		Long: `apply reads every document of FILE (separated by ---), of every *.yaml,
*.yml and *.json file of DIR, or of stdin (-). Argo CD cluster Secrets are
added first (as fjord cluster add -f does), then AppProjects, then
Applications; an automated app is synced before apply returns. Each
Application's project must exist (default always does).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readDocs(cmd, file)
			if err != nil {
				return err
			}
			c := admin.NewClient(g.dataDir)
			w := cmd.OutOrStdout()
			var results []any
			var failed []string
			for _, d := range docs {
				if d.Kind == "Secret" && reconciler.IsClusterSecret(d.Data) {
					st, err := addClusterSecret(cmd, c, d, out == "")
					if err != nil {
						failed = append(failed, d.String())
						fmt.Fprintf(w, "%s: refused: %v\n", d, err)
						continue
					}
					results = append(results, st)
					continue
				}
				if d.Kind == "AppProject" {
					p, err := c.ApplyProject(cmd.Context(), d.Data)
					if err != nil {
						failed = append(failed, d.String())
						fmt.Fprintf(w, "%s: refused: %v\n", d, err)
						continue
					}
					results = append(results, p)
					if out == "" {
						fmt.Fprintf(w, "project %s applied\n", p.Name)
					}
					continue
				}
				a, err := c.ApplyApp(cmd.Context(), d.Data)
				if err != nil {
					failed = append(failed, d.String())
					fmt.Fprintf(w, "%s: refused: %v\n", d, err)
					continue
				}
				results = append(results, a)
				if out != "" {
					continue
				}
				fmt.Fprintf(w, "app %s applied: %s, %s, commit %s\n", a.Name, a.Status.Sync, a.Status.Health, shortCommit(a.Status.SyncedCommit))
				switch {
				case a.Status.Sync == storage.SyncError:
					// Stored, but the cluster does not match git: CI should
					// see a failure.
					failed = append(failed, d.String())
					fmt.Fprintf(w, "  app %s is stored, but its sync failed (fix git and push, or `fjord app sync %s`): %s\n", a.Name, a.Name, a.Status.Error)
				case a.Status.Error != "":
					fmt.Fprintf(w, "  warning: %s\n", a.Status.Error)
				}
			}
			if out != "" {
				var v any = results
				if len(docs) == 1 && len(results) == 1 {
					v = results[0]
				}
				if _, err := printData(w, out, v); err != nil {
					return err
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of %d documents failed: %s", len(failed), len(docs), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "Application or AppProject file, directory of them, or - for stdin (required)")
	cmd.MarkFlagRequired("filename")
	addOutputFlag(cmd, &out)
	return cmd
}

func newAppValidateCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR|-",
		Short: "Check Application and AppProject files offline: one line per document, ok or every problem with its fix",
		Long: `validate needs no server: it checks each document as fjord app apply would,
but for what only the server knows (that the project and repo exist).
It exits 1 when any document is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := reconciler.ReadDocuments(file, cmd.InOrStdin())
			if err != nil {
				return fmt.Errorf("-f: %w", err)
			}
			if n := printValidation(cmd.OutOrStdout(), docs); n > 0 {
				return exitError{code: 1, err: fmt.Errorf("%d of %d documents refused", n, len(docs))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "Application or AppProject file, directory of them, or - for stdin (required)")
	cmd.MarkFlagRequired("filename")
	return cmd
}

// printValidation prints one line per document and returns how many were
// refused.
func printValidation(w io.Writer, docs []reconciler.Document) int {
	refused := 0
	for _, d := range docs {
		err := reconciler.ValidateDocument(d)
		if err == nil {
			fmt.Fprintf(w, "%s: ok\n", d)
			continue
		}
		refused++
		var ae *reconciler.AppError
		if errors.As(err, &ae) {
			fmt.Fprintf(w, "%s: refused\n", d)
			for _, p := range ae.Problems {
				fmt.Fprintf(w, "  - %s\n", p)
			}
			continue
		}
		fmt.Fprintf(w, "%s: refused: %v\n", d, err)
	}
	return refused
}

func newAppListCmd(g *globals) *cobra.Command {
	var out, selector string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List applications (child apps under their parent): project, repo, revision, sync, health, last drift",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sel, err := labels.Parse(selector)
			if err != nil {
				return fmt.Errorf("-l %q: %w (write key=value, key!=value, key in (a,b))", selector, err)
			}
			apps, err := admin.NewClient(g.dataDir).Apps(cmd.Context())
			if err != nil {
				return err
			}
			var kept []storage.App
			for _, a := range apps {
				if sel.Matches(labels.Set(a.Labels)) {
					kept = append(kept, a)
				}
			}
			if kept == nil {
				kept = []storage.App{}
			}
			if done, err := printData(cmd.OutOrStdout(), out, kept); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tPROJECT\tREPO\tREVISION\tSYNCED\tSYNC\tHEALTH\tLAST DRIFT\tERROR")
			for _, n := range appTree(kept) {
				a := n.app
				rev := "HEAD"
				if app, err := reconciler.ParseApplication([]byte(a.Manifest)); err == nil {
					rev = app.Revision()
				}
				fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.Repeat("  ", n.depth), a.Name, orDash(a.Project), a.Status.Repo, rev, shortCommit(a.Status.SyncedCommit),
					a.Status.Sync, a.Status.Health, driftLine(a.Status.LastDrift), oneLine(a.Status.Error, 60))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "only apps whose labels match, such as team=payments or 'env in (prod,staging)'")
	addOutputFlag(cmd, &out)
	return cmd
}

type treeNode struct {
	app   storage.App
	depth int
}

// appTree orders apps as a tree: each child right under its parent,
// indented one level deeper. An app whose parent is not in the list (or
// is filtered out) is a root.
func appTree(apps []storage.App) []treeNode {
	byName := map[string]bool{}
	for _, a := range apps {
		byName[a.Name] = true
	}
	kids := map[string][]storage.App{}
	var roots []storage.App
	for _, a := range apps {
		if a.Parent != "" && byName[a.Parent] && a.Parent != a.Name {
			kids[a.Parent] = append(kids[a.Parent], a)
		} else {
			roots = append(roots, a)
		}
	}
	var out []treeNode
	seen := map[string]bool{}
	var walk func(a storage.App, depth int)
	walk = func(a storage.App, depth int) {
		if seen[a.Name] {
			return
		}
		seen[a.Name] = true
		out = append(out, treeNode{a, depth})
		for _, k := range kids[a.Name] {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return out
}

// driftFieldsShown is how many changed fields a drift line shows before
// "(+N more)"; -o wide shows all.
const driftFieldsShown = 3

func newAppGetCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show an application: status, labels, objects and their health, orphans, retries, recent drift",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := admin.NewClient(g.dataDir).App(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			wide := out == "wide"
			if !wide {
				if done, err := printData(cmd.OutOrStdout(), out, a); done {
					return err
				}
			}
			printApp(cmd.OutOrStdout(), a, wide)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "output format: json, yaml or wide (every drifted field); default a summary for people")
	return cmd
}

func printApp(w io.Writer, a admin.AppDetail, wide bool) {
	st := a.Status
	fmt.Fprintf(w, "Name:          %s\nProject:       %s\n", a.Name, orDash(a.Project))
	if a.Parent != "" {
		fmt.Fprintf(w, "Parent:        %s\n", a.Parent)
	}
	cluster := a.Cluster
	if cluster == "" {
		cluster = reconciler.InClusterName
	}
	fmt.Fprintf(w, "Cluster:       %s\n", cluster)
	fmt.Fprintf(w, "Repo:          %s\nRevision:      %s\nSynced commit: %s (%s)\nSync:          %s\nHealth:        %s\n",
		st.Repo, st.Revision, st.SyncedCommit, ago(st.LastSynced), st.Sync, st.Health)
	if len(st.Sources) > 0 {
		fmt.Fprintf(w, "Sources:\n")
		for i, s := range st.Sources {
			fmt.Fprintf(w, "  %d. %s: %s (synced %s)\n", i+1, s.Source, orDash(s.Revision), orDash(s.Synced))
		}
	}
	if st.Error != "" {
		fmt.Fprintf(w, "Error:         %s\n", st.Error)
	}
	if rf := st.Refused; rf != nil {
		fmt.Fprintf(w, "Refused:       commit %s (%s): project %s requires a trusted signature, but %s\n", shortCommit(rf.Commit), ago(rf.Time), rf.Project, rf.Reason)
	}
	if p := st.Progress; p != nil {
		fmt.Fprintf(w, "Syncing:       %s phase, wave %d (since %s)\n", p.Phase, p.Wave, ago(p.Since))
	}
	if r := st.Retry; r != nil {
		limit := fmt.Sprint(r.Limit)
		if r.Limit < 0 {
			limit = "unlimited"
		}
		next := "none left: the next push or resync tries again"
		if !r.Next.IsZero() {
			next = "next " + r.Next.Local().Format(time.TimeOnly)
		}
		fmt.Fprintf(w, "Retry:         %d of %s for %s, %s (trigger retry)\n", r.Attempt, limit, shortCommit(r.Revision), next)
	}
	printMap(w, "Labels", a.Labels)
	printMap(w, "Annotations", a.Annotations)
	if app, err := reconciler.ParseApplication([]byte(a.Manifest)); err == nil && len(app.Spec.Info) > 0 {
		fmt.Fprintln(w, "Info:")
		for _, in := range app.Spec.Info {
			fmt.Fprintf(w, "  %s: %s\n", in.Name, in.Value)
		}
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
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", d.Time.Local().Format(time.DateTime), d.Action, d.Object, driftFields(d, wide), orDash(d.Manager))
		}
		tw.Flush()
	}
}

// driftFields is the count and the first fields of a drift; all of them
// when wide.
func driftFields(d storage.DriftEvent, wide bool) string {
	if d.Deleted {
		return "deleted"
	}
	n := len(d.Fields)
	if wide || n <= driftFieldsShown {
		return fmt.Sprintf("%d: %s", n, strings.Join(d.Fields, ","))
	}
	return fmt.Sprintf("%d: %s (+%d more, -o wide)", n, strings.Join(d.Fields[:driftFieldsShown], ","), n-driftFieldsShown)
}

func printMap(w io.Writer, title string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s=%s\n", k, m[k])
	}
}
