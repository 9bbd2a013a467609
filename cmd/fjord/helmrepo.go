package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/helmrepo"
)

func newHelmRepoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "helmrepo",
		Short: "Mirrored Helm chart repositories (https:// index.yaml and oci:// registries)",
		Long: `helmrepo manages the Helm repositories fjord mirrors. fjord reads each
repository's index (for oci://, the tags of the charts asked for) on an
interval, fetches every chart version an app asks for once, checks its digest
and keeps it under DATA/helm, so rendering never waits on the repository and
keeps working while it is down.

An app that names a public repository fjord does not know yet adds it by
itself; a repository that wants credentials must be added first:
  fjord helmrepo add https://charts.example.com/private --username ci --password-file pw.txt`,
	}
	cmd.AddCommand(newHelmRepoAddCmd(g), newHelmRepoListCmd(g), newHelmRepoRefreshCmd(g), newHelmRepoDeleteCmd(g))
	return cmd
}

func newHelmRepoAddCmd(g *globals) *cobra.Command {
	var (
		req          admin.AddHelmRepoRequest
		username     string
		passwordFile string
		output       string
	)
	cmd := &cobra.Command{
		Use:   "add URL [--name N] [--username U --password-file F] [--interval D] [--plain-http]",
		Short: "Mirror a Helm repository and read its index once",
		Long: `add mirrors the Helm repository at URL (https://HOST/PATH, the directory of
index.yaml, or oci://HOST/PATH, the registry path the chart names are
appended to) and reads its index once; if that fails nothing is added and the
error says why. The password is read from a file, copied into the data dir
(0600) and never shown.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("helmrepo add takes one repository URL, got %d: e.g. fjord helmrepo add https://charts.example.com/stable", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := helmrepo.NormalizeURL(args[0])
			if err != nil {
				return err
			}
			req.URL = u
			if (username == "") != (passwordFile == "") {
				return errors.New("give both --username and --password-file, or neither")
			}
			if passwordFile != "" {
				pw, err := os.ReadFile(passwordFile)
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("--password-file %s: no such file: write the password (or token) into a file, e.g. printf %%s \"$TOKEN\" > pw.txt", passwordFile)
				}
				if err != nil {
					return fmt.Errorf("--password-file: %w", err)
				}
				if strings.TrimRight(string(pw), "\r\n") == "" {
					return fmt.Errorf("--password-file %s is empty", passwordFile)
				}
				req.Credentials = map[string][]byte{helmrepo.CredUsername: []byte(username), helmrepo.CredPassword: pw}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "reading the index of %s ...\n", u)
			r, err := admin.NewClient(g.dataDir).AddHelmRepo(cmd.Context(), req)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, r); done {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "helm repository %s added: %s, index read every %s\n", r.Name, r.URL, r.Interval)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "name for the repository (default: made from the URL)")
	f.StringVar(&username, "username", "", "user for HTTP basic auth (or a registry login)")
	f.StringVar(&passwordFile, "password-file", "", "file holding the password or token for --username")
	f.DurationVar(&req.Interval, "interval", helmrepo.DefaultInterval, "time between index reads")
	f.BoolVar(&req.PlainHTTP, "plain-http", false, "talk to an oci:// registry over http instead of https")
	addOutputFlag(cmd, &output)
	return cmd
}

func newHelmRepoListCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List Helm repositories: URL, charts kept, last index read, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := admin.NewClient(g.dataDir).HelmRepos(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, rs); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tURL\tCHARTS KEPT\tINTERVAL\tLAST INDEX READ\tLAST ERROR")
			for _, r := range rs {
				name := r.Name
				if r.Auto {
					name += " (auto)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", name, r.URL, len(r.Charts), r.Interval, ago(r.LastFetch), oneLine(r.LastError, 80))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func newHelmRepoRefreshCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "refresh NAME|URL",
		Short: "Read a Helm repository's index now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			r, err := admin.NewClient(g.dataDir).RefreshHelmRepo(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if r.LastError != "" && r.LastAttempt.After(r.LastFetch) {
				return fmt.Errorf("reading the index of %s failed (the last good index stays in use; scheduled reads retry with backoff): %s", r.Name, r.LastError)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: index read in %s\n", r.Name, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
}

func newHelmRepoDeleteCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete NAME|URL [--force]",
		Short: "Stop mirroring a Helm repository and drop the charts it keeps",
		Long: `delete removes a Helm repository, its credentials and every chart version
fjord keeps from it. It is refused while an app takes a chart from it, unless
--force: an app that still names a public repository adds it again by itself
on its next render (and fetches its chart again); one that names a private
repository fails to sync until it is added again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := admin.NewClient(g.dataDir).DeleteHelmRepo(cmd.Context(), args[0], force)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "helm repository %s (%s) deleted\n", r.Name, r.URL)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete even while apps take charts from it")
	return cmd
}
