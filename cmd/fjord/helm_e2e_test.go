package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A two-source app through fjord serve: a chart in one repo, its value
// file in another ($values); app get shows each source's commit.
func TestAppGetShowsEachSource(t *testing.T) {
	env := startKube(t)
	s := newSession(t)
	s.start("--admin-key", s.key+".pub", "--kubeconfig", env.Kubeconfig())
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(lastLine(s.mustFjord("hostkey"))+"\n"), 0o600)
	heads := map[string]string{}
	for repo, files := range map[string]map[string]string{
		"charts": {
			"web/Chart.yaml":        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
			"web/values.yaml":       "greeting: hello\n",
			"web/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
		},
		"values": {"prod/values.yaml": "greeting: from the values repo\n"},
	} {
		s.mustFjord("repo", "create", repo)
		work := filepath.Join(s.dir, repo)
		s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/"+repo+".git", work)
		for p, c := range files {
			os.MkdirAll(filepath.Dir(filepath.Join(work, p)), 0o755)
			os.WriteFile(filepath.Join(work, p), []byte(c), 0o644)
		}
		s.mustGit(work, "add", ".")
		s.mustGit(work, "commit", "-q", "-m", "one")
		s.mustGit(work, "push", "-q", "origin", "HEAD:main")
		heads[repo] = strings.TrimSpace(s.mustGit(work, "rev-parse", "HEAD"))
	}
	ns := env.Namespace(t)
	app := filepath.Join(s.dir, "app.yaml")
	os.WriteFile(app, []byte(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: greeter
spec:
  sources:
  - repoURL: charts
    path: web
    helm:
      valueFiles: [$values/prod/values.yaml]
  - repoURL: values
    ref: values
  destination:
    server: https://kubernetes.default.svc
    namespace: `+ns+`
  syncPolicy:
    automated: {prune: true}
`), 0o644)
	if out, err := s.fjord("app", "apply", "-f", app); err != nil || !strings.Contains(out, "app greeter applied: Synced") {
		t.Fatalf("app apply: %v\n%s", err, out)
	}
	out := s.mustFjord("app", "get", "greeter")
	for _, want := range []string{
		"Sources:\n",
		"1. charts web: " + heads["charts"] + " (synced " + heads["charts"] + ")",
		"2. values (ref values): " + heads["values"] + " (synced " + heads["values"] + ")",
		"ConfigMap/" + ns + "/greeter-greeting",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("app get lacks %q:\n%s", want, out)
		}
	}
	var got struct {
		Status struct {
			Sources []struct{ Source, Revision, Synced string }
		}
	}
	if err := json.Unmarshal([]byte(s.mustFjord("app", "get", "greeter", "-o", "json")), &got); err != nil || len(got.Status.Sources) != 2 || got.Status.Sources[1].Revision != heads["values"] {
		t.Errorf("app get -o json: %v %+v", err, got)
	}
}
