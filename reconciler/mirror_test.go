package reconciler_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
)

// An Application whose repoURL is the upstream of a pull mirror reads the
// co-located mirror, and a mirror sync that moves the branch reconciles
// at once, like a push.
func TestMirrorSyncTriggersReconcile(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)

	// The upstream: a bare repo outside fjord, filled from a clone.
	up := filepath.Join(t.TempDir(), "gitops-infra.git")
	git(t, "", "init", "-q", "--bare", "-b", "main", up)
	src := t.TempDir()
	git(t, src, "clone", "-q", up, ".")
	git(t, src, "checkout", "-q", "-b", "main")
	os.MkdirAll(filepath.Join(src, "app"), 0o755)
	os.WriteFile(filepath.Join(src, "app", "cms.yaml"), []byte(twoConfigMaps), 0o644)
	git(t, src, "add", ".")
	git(t, src, "commit", "-q", "-m", "v1")
	git(t, src, "push", "-q", "origin", "main")

	store := openStore(t, t.TempDir())
	mirrors, err := mirror.New(mirror.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(context.Background())
	mdone := make(chan struct{})
	go func() { mirrors.Run(mctx); close(mdone) }()
	t.Cleanup(func() { mcancel(); <-mdone })
	upURL := "file://" + up
	if _, err := mirrors.Add(context.Background(), storage.Mirror{Repo: "gitops-infra", Upstream: upURL}, nil); err != nil {
		t.Fatal(err)
	}
	rec, _ := c.start(store)
	name := "mirror-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, upURL, "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "drop") == nil {
		t.Fatal("not applied from the mirror")
	}

	// Upstream drops a ConfigMap; the mirror sync lands it and fjord prunes.
	os.WriteFile(filepath.Join(src, "app", "cms.yaml"), []byte(strings.SplitN(twoConfigMaps, "---\n", 2)[0]), 0o644)
	git(t, src, "commit", "-q", "-am", "v2")
	git(t, src, "push", "-q", "origin", "main")
	if _, err := mirrors.Sync(context.Background(), "gitops-infra"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the mirror sync reconciled", func() (bool, string) {
		h, _ := store.AppSyncs(name, 1)
		return c.get(gvrCM, ns, "drop") == nil && len(h) == 1 && h[0].Trigger == storage.TriggerMirror, fmt.Sprintf("%+v", h)
	})
}
