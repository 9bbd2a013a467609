package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
)

// TestHelmRepoCommands runs the README's helmrepo commands against a real
// server and a private Helm repository served over HTTP.
func TestHelmRepoCommands(t *testing.T) {
	s := newSession(t)
	s.start()
	const pass = "cli-Pa55word"
	repo := helmrepotest.NewServer(t, helmrepotest.Options{Username: "ci", Password: pass})
	repo.Publish(helmrepotest.Chart("demo", "1.0.0"))
	pw := filepath.Join(s.home, "pw.txt")
	os.WriteFile(pw, []byte(pass+"\n"), 0o600)

	if out, err := s.fjord("helmrepo", "add", repo.URL()); err == nil || !strings.Contains(out, "needs credentials") || !strings.Contains(out, "--username U --password-file") {
		t.Fatalf("helmrepo add of a private repository without credentials: %v\n%s", err, out)
	}
	if out, err := s.fjord("helmrepo", "add", repo.URL(), "--username", "ci"); err == nil || !strings.Contains(out, "--password-file") {
		t.Fatalf("--username alone: %v\n%s", err, out)
	}
	if out, err := s.fjord("helmrepo", "add", "https://ci:"+pass+"@charts.example.com"); err == nil || strings.Contains(out, pass) || !strings.Contains(out, "--password-file") {
		t.Fatalf("a password in the URL: %v\n%s", err, out)
	}
	out := s.mustFjord("helmrepo", "add", repo.URL(), "--name", "private", "--username", "ci", "--password-file", pw, "--interval", "10m")
	if !strings.Contains(out, "helm repository private added") {
		t.Fatalf("helmrepo add: %q", out)
	}
	if out, err := s.fjord("helmrepo", "add", repo.URL()+"/", "--name", "again"); err == nil || !strings.Contains(out, `already mirrored as "private"`) {
		t.Fatalf("the same URL twice: %v\n%s", err, out)
	}
	out = s.mustFjord("helmrepo", "list")
	if !strings.Contains(out, "private") || !strings.Contains(out, repo.URL()) || !strings.Contains(out, "ago") || strings.Contains(out, pass) {
		t.Fatalf("helmrepo list: %q", out)
	}
	var list []struct {
		Name, URL   string
		Credentials []string
		LastFetch   string
		Charts      []any
	}
	if err := json.Unmarshal([]byte(s.mustFjord("helmrepo", "list", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "private" || len(list[0].Credentials) != 2 || list[0].LastFetch == "" || list[0].Charts == nil {
		t.Fatalf("helmrepo list -o json: %+v", list)
	}
	if out := s.mustFjord("helmrepo", "refresh", "private"); !strings.Contains(out, "index read") {
		t.Fatalf("helmrepo refresh: %q", out)
	}
	repo.Close()
	if out, err := s.fjord("helmrepo", "refresh", "private"); err == nil || !strings.Contains(out, "last good index stays") {
		t.Fatalf("helmrepo refresh with the repository down: %v\n%s", err, out)
	}
	if out, err := s.fjord("helmrepo", "delete", "nope"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("deleting an unknown repository: %v\n%s", err, out)
	}
	if out := s.mustFjord("helmrepo", "delete", repo.URL()); !strings.Contains(out, "helm repository private") {
		t.Fatalf("helmrepo delete by URL: %q", out)
	}
	if out := s.mustFjord("helmrepo", "list"); strings.Contains(out, "private") {
		t.Fatalf("helmrepo list after delete: %q", out)
	}
	if strings.Contains(s.serveLog(), pass) {
		t.Errorf("the password is in the server's log")
	}
}
