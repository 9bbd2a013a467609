package reconciler

import (
	"context"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

func TestResolveRepo(t *testing.T) {
	store, err := storage.Open(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, name := range []string{"gitops-infra", "team/app", "mirrored"} {
		if _, err := store.CreateRepo(context.Background(), storage.Repo{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.CreateMirror(storage.Mirror{Repo: "mirrored", Upstream: "https://github.com/nordic-fintech/gitops-infra.git"}); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{store: store, sshPort: "2222"}
	for url, want := range map[string]string{
		"gitops-infra":     "gitops-infra",
		"gitops-infra.git": "gitops-infra",
		"team/app":         "team/app",
		"ssh://git@fjord.example:2222/team/app.git": "team/app",
		"ssh://127.0.0.1:2222/gitops-infra":         "gitops-infra",
		// The seed article's GitHub URL reads the co-located mirror.
		"git@github.com:nordic-fintech/gitops-infra.git": "mirrored",
	} {
		if got, err := r.resolveRepo(url); err != nil || got != want {
			t.Errorf("resolveRepo(%q) = %q, %v; want %q", url, got, err, want)
		}
	}
	for url, want := range map[string]string{
		"nope":                                  "fjord repo list",
		"ssh://git@fjord.example:2222/nope.git": "does not have",
		"git@github.com:other/repo.git":         "fjord mirror add",
		"ssh://git@elsewhere:22/team/app.git":   "not a repo of this fjord",
	} {
		if _, err := r.resolveRepo(url); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resolveRepo(%q) = %v, want an error mentioning %q", url, err, want)
		}
	}
}
