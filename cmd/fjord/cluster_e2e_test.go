package main_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterCLI is `fjord cluster` as an operator types it: a context
// of a kubeconfig added (wrong context, exec credential and unreachable
// server refused with what to do), an Argo CD cluster Secret added with
// `app apply -f` beside the Application that deploys there, list, delete
// refused while used. The credential never shows in any output or log.
// (The second cluster is the same API server under another URL: what
// fjord does with two real ones is reconciler's TestSeveralClusters.)
func TestClusterCLI(t *testing.T) {
	env := startKube(t)
	s := newSession(t)
	s.start("--admin-key", s.key+".pub", "--kubeconfig", env.Kubeconfig())
	var outputs []string
	run := func(args ...string) (string, error) {
		out, err := s.fjord(args...)
		outputs = append(outputs, out)
		return out, err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("fjord %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	if out, err := run("cluster", "add", "edge", "--kubeconfig", env.Kubeconfig(), "--context", "prod"); err == nil || !strings.Contains(out, `no context "prod": use one of fjord-testenv`) {
		t.Fatalf("wrong context: %v %q", err, out)
	}
	execCfg := filepath.Join(s.dir, "exec-kubeconfig")
	os.WriteFile(execCfg, []byte(`apiVersion: v1
kind: Config
clusters:
- name: eks
  cluster: {server: "https://eks.example.com"}
users:
- name: sso
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: aws, args: [eks, get-token]}
contexts:
- name: eks
  context: {cluster: eks, user: sso}
current-context: eks
`), 0o600)
	if out, err := run("cluster", "add", "eks", "--kubeconfig", execCfg); err == nil || !strings.Contains(out, `runs "aws" to get a credential (exec)`) || !strings.Contains(out, "service-account token") {
		t.Fatalf("exec credential: %v %q", err, out)
	}
	kc, _ := os.ReadFile(env.Kubeconfig())
	downCfg := filepath.Join(s.dir, "down-kubeconfig")
	os.WriteFile(downCfg, []byte(strings.Replace(string(kc), env.URL(), "https://127.0.0.1:1", 1)), 0o600)
	if out, err := run("cluster", "add", "down", "--kubeconfig", downCfg); err == nil || !strings.Contains(out, "https://127.0.0.1:1 is unreachable") {
		t.Fatalf("unreachable server: %v %q", err, out)
	}

	out := must("cluster", "add", "edge", "--kubeconfig", env.Kubeconfig())
	if !strings.Contains(out, "cluster edge added: "+env.URL()+" answers (Kubernetes v1.") || !strings.Contains(out, "destination.name: edge") {
		t.Fatalf("cluster add: %q", out)
	}
	if out, err := run("cluster", "add", "edge", "--kubeconfig", env.Kubeconfig()); err == nil || !strings.Contains(out, "--upsert") {
		t.Fatalf("adding edge twice: %v %q", err, out)
	}
	must("cluster", "add", "edge", "--kubeconfig", env.Kubeconfig(), "--upsert")

	// A repo with one ConfigMap, and in one file an Argo CD cluster
	// Secret (the same API server as localhost) and the app that uses it.
	line := lastLine(s.mustFjord("hostkey"))
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(line+"\n"), 0o600)
	must("repo", "create", "gitops")
	work := filepath.Join(s.dir, "work")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/gitops.git", work)
	os.MkdirAll(filepath.Join(work, "edge"), 0o755)
	os.WriteFile(filepath.Join(work, "edge", "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: edge-settings\ndata:\n  k: v\n"), 0o644)
	s.mustGit(work, "add", ".")
	s.mustGit(work, "commit", "-q", "-m", "edge")
	s.mustGit(work, "push", "-q", "origin", "HEAD:main")
	ca, _ := os.ReadFile(env.CAFile())
	config, _ := json.Marshal(map[string]any{"bearerToken": env.Token(), "tlsClientConfig": map[string]any{"caData": ca}})
	localhost := strings.Replace(env.URL(), "127.0.0.1", "localhost", 1)
	docs := `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: edge-app
spec:
  source:
    repoURL: gitops
    path: edge
  destination:
    name: edge-local
    namespace: edge
  syncPolicy:
    automated: {prune: true}
    syncOptions: [CreateNamespace=true]
---
apiVersion: v1
kind: Secret
metadata:
  name: cluster-edge-local
  namespace: argocd
  labels:
    argocd.argoproj.io/secret-type: cluster
type: Opaque
data:
  name: ` + base64.StdEncoding.EncodeToString([]byte("edge-local")) + `
  server: ` + base64.StdEncoding.EncodeToString([]byte(localhost)) + `
  config: ` + base64.StdEncoding.EncodeToString(config) + `
`
	file := filepath.Join(s.dir, "edge.yaml")
	os.WriteFile(file, []byte(docs), 0o600)
	if out, err := run("app", "validate", "-f", file); err != nil || strings.Count(out, ": ok") != 2 {
		t.Fatalf("app validate of an app and a cluster Secret: %v %q", err, out)
	}
	out = must("app", "apply", "-f", file)
	if !strings.Contains(out, "cluster edge-local added: "+localhost) || !strings.Contains(out, "app edge-app applied: Synced") {
		t.Fatalf("app apply with a cluster Secret: %q", out)
	}
	// The Secret alone, applied again (declarative): it updates the
	// cluster. An Application is not cluster add's to apply.
	secretOnly := filepath.Join(s.dir, "secret.yaml")
	os.WriteFile(secretOnly, []byte(docs[strings.Index(docs, "apiVersion: v1\nkind: Secret"):]), 0o600)
	if out := must("cluster", "add", "-f", secretOnly); !strings.Contains(out, "cluster edge-local added") || !strings.Contains(out, "apps on it: edge-app") {
		t.Fatalf("cluster add -f: %q", out)
	}
	if out, err := run("cluster", "add", "-f", file); err == nil || !strings.Contains(out, "not an Argo CD cluster Secret") {
		t.Fatalf("cluster add -f of an Application: %v %q", err, out)
	}

	var list []struct {
		Name, Server, State, LastError string
		Apps                           []string
		Credentials                    []string
	}
	raw := must("cluster", "list", "-o", "json")
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Name != "in-cluster" || list[1].Name != "edge" || list[2].Name != "edge-local" ||
		list[2].Server != localhost || list[2].State != "Connected" || strings.Join(list[2].Apps, ",") != "edge-app" ||
		list[1].Server != env.URL() || len(list[1].Apps) != 0 || strings.Join(list[1].Credentials, ",") != "ca.crt,token" {
		t.Fatalf("cluster list -o json: %s", raw)
	}
	table := must("cluster", "list")
	if !strings.Contains(table, "NAME") || !strings.Contains(table, "edge-local") || !strings.Contains(table, "Connected") {
		t.Fatalf("cluster list: %q", table)
	}

	if out := must("app", "get", "edge-app"); !strings.Contains(out, "Cluster:       edge-local") {
		t.Fatalf("app get: %q", out)
	}
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`fjord_cluster_up{cluster="edge-local"} 1`, `fjord_app_sync_duration_seconds_count{cluster="edge-local",outcome="ok",trigger="apply"}`, `fjord_cluster_api_requests_total{cluster="edge-local"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if out, err := run("cluster", "delete", "edge-local"); err == nil || !strings.Contains(out, "in use by apps [edge-app]") {
		t.Fatalf("delete a cluster in use: %v %q", err, out)
	}
	if out, err := run("cluster", "delete", "edg"); err == nil || !strings.Contains(out, `did you mean "edge"`) {
		t.Fatalf("delete a cluster that does not exist: %v %q", err, out)
	}
	must("app", "delete", "edge-app", "--cascade")
	must("cluster", "delete", "edge-local")
	must("cluster", "delete", "edge")
	if out := must("cluster", "list"); strings.Contains(out, "edge") {
		t.Fatalf("cluster list after delete: %q", out)
	}

	for _, out := range append(outputs, s.serveLog()) {
		if strings.Contains(out, env.Token()) {
			t.Fatalf("the bearer token shows in:\n%s", out)
		}
	}
}
