package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Clusters apps deploy to besides fjord's own (destination.name or destination.server)",
		Long: `cluster manages the Kubernetes clusters an Application may name in
spec.destination (name: NAME, or server: its URL). fjord's own cluster, the
one of fjord serve's kubeconfig, is always there as in-cluster
(https://kubernetes.default.svc). A cluster's credentials (CA, client
certificate and key, or bearer token) are stored on the server with mode
0600 and never shown.`,
	}
	cmd.AddCommand(newClusterAddCmd(g), newClusterListCmd(g), newClusterDeleteCmd(g))
	return cmd
}

func newClusterAddCmd(g *globals) *cobra.Command {
	var kubeconfig, kubeContext, file, out string
	var upsert bool
	cmd := &cobra.Command{
		Use:   "add NAME --kubeconfig FILE [--context C] | add -f FILE|DIR|-",
		Short: "Add a cluster from a kubeconfig context, or from Argo CD cluster Secrets (-f); fjord checks it answers",
		Long: `add stores a cluster under NAME from the context C (default: the current
context) of a kubeconfig file: its server URL and the CA, client certificate
and key or bearer token of that context's user. A user whose credential comes
from a program (exec, auth-provider) is refused: give fjord a service-account
token or a client certificate. fjord serve checks that it reaches the server
with that credential before storing anything.

With -f, add reads Argo CD's declarative cluster Secrets (label
argocd.argoproj.io/secret-type: cluster; data or stringData name, server and
config with bearerToken and tlsClientConfig) and adds or updates each one.
fjord app apply -f does the same for such Secrets in its files.`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case file != "" && (len(args) > 0 || kubeconfig != ""):
				return errors.New("give either NAME --kubeconfig FILE, or -f FILE with Argo CD cluster Secrets, not both")
			case file != "":
				return nil
			case len(args) != 1:
				return errors.New("give the cluster's NAME and --kubeconfig FILE (or -f FILE with Argo CD cluster Secrets)")
			case kubeconfig == "":
				return fmt.Errorf("cluster %s: --kubeconfig FILE is required (the file with the context that reaches it)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c := admin.NewClient(g.dataDir)
			w := cmd.OutOrStdout()
			if file != "" {
				docs, err := reconciler.ReadDocuments(file, cmd.InOrStdin())
				if err != nil {
					return fmt.Errorf("-f: %w", err)
				}
				var results []admin.ClusterStatus
				var failed []string
				for _, d := range docs {
					if !reconciler.IsClusterSecret(d.Data) {
						failed = append(failed, d.String())
						fmt.Fprintf(w, "%s: refused: not an Argo CD cluster Secret (kind Secret with label %s: %s)\n", d, reconciler.LabelSecretType, reconciler.SecretTypeCluster)
						continue
					}
					st, err := addClusterSecret(cmd, c, d, out == "")
					if err != nil {
						failed = append(failed, d.String())
						fmt.Fprintf(w, "%s: refused: %v\n", d, err)
						continue
					}
					results = append(results, st)
				}
				if out != "" {
					if _, err := printData(w, out, results); err != nil {
						return err
					}
				}
				if len(failed) > 0 {
					return fmt.Errorf("%d of %d documents failed: %s", len(failed), len(docs), strings.Join(failed, ", "))
				}
				return nil
			}
			name := args[0]
			if err := storage.ValidateClusterName(name); err != nil {
				return err
			}
			if abs, err := filepath.Abs(kubeconfig); err == nil {
				kubeconfig = abs // the source `cluster list -o json` shows
			}
			cl, creds, err := reconciler.ClusterFromKubeconfig(kubeconfig, kubeContext)
			if err != nil {
				return fmt.Errorf("cluster %s: %w", name, err)
			}
			cl.Name = name
			if out == "" {
				fmt.Fprintf(w, "checking that fjord serve reaches %s with the credential of %s ...\n", cl.Server, strings.TrimPrefix(cl.Source, "kubeconfig "))
			}
			st, err := c.AddCluster(cmd.Context(), clusterRequest(cl, creds, upsert))
			if err != nil {
				return err
			}
			if done, err := printData(w, out, st); done {
				return err
			}
			printClusterAdded(w, st)
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file holding the cluster's context")
	cmd.Flags().StringVar(&kubeContext, "context", "", "context of the kubeconfig (default: its current-context)")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "Argo CD cluster Secret file, directory of them, or - for stdin")
	cmd.Flags().BoolVar(&upsert, "upsert", false, "replace a cluster of the same name (its apps are synced again)")
	addOutputFlag(cmd, &out)
	return cmd
}

func clusterRequest(c storage.Cluster, creds storage.ClusterCredentials, replace bool) admin.AddClusterRequest {
	return admin.AddClusterRequest{Cluster: c, CA: creds.CA, Cert: creds.Cert, Key: creds.Key, Token: creds.Token, Replace: replace}
}

// addClusterSecret adds (or updates: a declarative Secret is applied
// again and again) the cluster of an Argo CD cluster Secret.
func addClusterSecret(cmd *cobra.Command, c *admin.Client, d reconciler.Document, human bool) (admin.ClusterStatus, error) {
	cl, creds, err := reconciler.ClusterFromSecret(d.Data)
	if err != nil {
		return admin.ClusterStatus{}, err
	}
	st, err := c.AddCluster(cmd.Context(), clusterRequest(cl, creds, true))
	if err != nil {
		return admin.ClusterStatus{}, err
	}
	if human {
		printClusterAdded(cmd.OutOrStdout(), st)
	}
	return st, nil
}

func printClusterAdded(w io.Writer, st admin.ClusterStatus) {
	fmt.Fprintf(w, "cluster %s added: %s answers (Kubernetes %s)", st.Name, st.Server, st.Version)
	if len(st.Apps) > 0 {
		fmt.Fprintf(w, "; apps on it: %s", strings.Join(st.Apps, ", "))
	}
	fmt.Fprintf(w, "\n  apps reach it with spec.destination.name: %s (or server: %s)\n", st.Name, st.Server)
}

func newClusterListCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List clusters: name, server, apps, state (Connected, Unreachable, Unknown), last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := admin.NewClient(g.dataDir).Clusters(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), out, cs); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tSERVER\tAPPS\tSTATE\tLAST ERROR")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.Name, orDash(c.Server), len(c.Apps), c.State, orDash(oneLine(c.LastError, 80)))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newClusterDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a cluster and its stored credentials (refused while an app deploys to it, naming the apps)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).DeleteCluster(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s deleted\n", args[0])
			return nil
		},
	}
}
