package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLICommands runs the README's remaining commands against a real
// server: repo update, grant none, user delete, push mirrors, mirror
// delete --keep-repo, version.
func TestCLICommands(t *testing.T) {
	s := newSession(t)
	s.start("--admin-key", s.key+".pub")

	if out := s.mustFjord("version"); !strings.HasPrefix(out, "fjord ") {
		t.Fatalf("version: %q", out)
	}
	s.mustFjord("repo", "create", "team/app", "--description", "the app")
	if out := s.mustFjord("repo", "update", "team/app.git", "--anon-read=true"); !strings.Contains(out, "anonymous read true") {
		t.Fatalf("repo update: %q", out)
	}
	var repos []struct {
		Name     string `json:"name"`
		AnonRead bool   `json:"anonRead"`
	}
	json.Unmarshal([]byte(s.mustFjord("repo", "list", "-o", "json")), &repos)
	if len(repos) != 1 || repos[0].Name != "team/app" || !repos[0].AnonRead {
		t.Fatalf("repo list after update: %+v", repos)
	}

	ci := writeKey(t, filepath.Join(s.home, "ci"))
	s.mustFjord("user", "add", "ci", "--key", ci+".pub")
	s.mustFjord("grant", "ci", "team/app", "write")
	s.mustFjord("grant", "ci", "team/app", "none")
	if out := s.mustFjord("grant", "list"); strings.Contains(out, "team/app") {
		t.Fatalf("grant none left a grant: %q", out)
	}
	s.mustFjord("user", "delete", "ci")
	if out := s.mustFjord("user", "list", "-o", "json"); strings.Contains(out, `"ci"`) {
		t.Fatalf("user delete: %q", out)
	}
	if out, err := s.fjord("user", "delete", "ci"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("deleting a missing user: %v %q", err, out)
	}

	// A push mirror to a local bare repo.
	remote := filepath.Join(s.dir, "dr.git")
	s.mustGit("", "init", "-q", "--bare", remote)
	if out := s.mustFjord("pushmirror", "add", "team/app", "--remote", "file://"+remote); !strings.Contains(out, "added and in sync") {
		t.Fatalf("pushmirror add: %q", out)
	}
	var pms []struct {
		Repo, Remote string
	}
	json.Unmarshal([]byte(s.mustFjord("pushmirror", "list", "-o", "json")), &pms)
	if len(pms) != 1 || pms[0].Repo != "team/app" || pms[0].Remote != "file://"+remote {
		t.Fatalf("pushmirror list: %+v", pms)
	}
	s.mustFjord("pushmirror", "delete", "team/app", "--remote", "file://"+remote)
	if out := s.mustFjord("pushmirror", "list"); strings.Contains(out, "team/app") {
		t.Fatalf("pushmirror delete: %q", out)
	}

	// A mirror deleted with --keep-repo becomes an ordinary repo.
	s.mustFjord("mirror", "add", "copy", "--upstream", "file://"+remote)
	s.mustFjord("mirror", "delete", "copy", "--keep-repo")
	if out := s.mustFjord("mirror", "list"); strings.Contains(out, "copy") {
		t.Fatalf("mirror delete: %q", out)
	}
	if out := s.mustFjord("repo", "list"); !strings.Contains(out, "copy") {
		t.Fatalf("--keep-repo lost the repo: %q", out)
	}
}
