package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/reconciler"
)

func newProjectCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "project",
		Short: "Projects: Argo CD AppProjects that bound what apps may deploy",
		Long: `project manages Argo CD AppProjects: the repos (sourceRepos), destinations
and kinds (cluster/namespace resource white- and blacklists) an app of the
project may use. An app whose render breaks a rule fails its sync, applying
nothing. The project default allows everything unless you apply one named
default.`,
	}
	cmd.AddCommand(newProjectApplyCmd(g), newProjectListCmd(g), newProjectGetCmd(g), newProjectDeleteCmd(g))
	return cmd
}

func newProjectApplyCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update projects from AppProject files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readDocs(cmd, file)
			if err != nil {
				return err
			}
			c := admin.NewClient(g.dataDir)
			var failed []string
			for _, d := range docs {
				if d.Kind != "AppProject" {
					failed = append(failed, d.String())
					fmt.Fprintf(cmd.OutOrStdout(), "%s: refused: kind %q is not AppProject (apply Applications with `fjord app apply`)\n", d, d.Kind)
					continue
				}
				p, err := c.ApplyProject(cmd.Context(), d.Data)
				if err != nil {
					failed = append(failed, d.String())
					fmt.Fprintf(cmd.OutOrStdout(), "%s: refused: %v\n", d, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "project %s applied\n", p.Name)
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of %d documents failed: %s", len(failed), len(docs), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "AppProject file, directory of them, or - for stdin (required)")
	cmd.MarkFlagRequired("filename")
	return cmd
}

func newProjectListCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List projects: source repos, destinations, parent app, description",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := admin.NewClient(g.dataDir).Projects(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), out, ps); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tSOURCE REPOS\tDESTINATIONS\tPARENT\tDESCRIPTION")
			for _, s := range ps {
				p, err := reconciler.ParseProject([]byte(s.Manifest))
				if err != nil {
					fmt.Fprintf(tw, "%s\t-\t-\t%s\t%s\n", s.Name, orDash(s.Parent), oneLine(err.Error(), 60))
					continue
				}
				var dests []string
				for _, d := range p.Spec.Destinations {
					dests = append(dests, orDash(d.Server+d.Name)+"/"+orDash(d.Namespace))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, strings.Join(p.Spec.SourceRepos, ","), strings.Join(dests, ","), orDash(s.Parent), oneLine(p.Spec.Description, 60))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newProjectGetCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a project: its AppProject document and the apps that use it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := admin.NewClient(g.dataDir).Project(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), out, d); done {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Name:    %s\n", d.Name)
			if d.Parent != "" {
				fmt.Fprintf(w, "Parent:  %s\n", d.Parent)
			}
			fmt.Fprintf(w, "Apps:    %s\n\n%s", orDash(strings.Join(d.Apps, ", ")), d.Manifest)
			return nil
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newProjectDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a project (refused while apps use it, naming them)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).DeleteProject(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "project %s deleted\n", args[0])
			return nil
		},
	}
}
