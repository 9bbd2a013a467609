package mirror_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
)

// TestUpdate changes a mirror in place: a replaced token is used by the
// next sync, a new webhook secret is checked by the next webhook, the
// interval is stored, lowering retention drops the oldest events and
// their backup refs at once, and a refused update changes nothing.
func TestUpdate(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	root := t.TempDir()
	up := newUpstream(t, root, "up")
	httpURL, _ := httpUpstream(t, root, "right-token")
	if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: "m", Upstream: httpURL + "/up.git", Interval: time.Hour},
		map[string][]byte{mirror.CredToken: []byte("right-token")}); err != nil {
		t.Fatal(err)
	}

	// A wrong token: the next sync is refused; the right one again: it
	// works. History stays throughout.
	wrong := "wrong-token"
	if _, err := f.mgr.Update(ctx, "m", mirror.Update{Credentials: map[string][]byte{mirror.CredToken: []byte(wrong)}}); err != nil {
		t.Fatal(err)
	}
	up.commit()
	up.push("main")
	if rec, _ := f.mgr.Sync(ctx, "m"); !strings.Contains(rec.Error, "refused the credentials") {
		t.Fatalf("sync after a wrong token: %+v", rec)
	}
	if _, err := f.mgr.Update(ctx, "m", mirror.Update{Credentials: map[string][]byte{mirror.CredToken: []byte("right-token")}}); err != nil {
		t.Fatal(err)
	}
	if rec, err := f.mgr.Sync(ctx, "m"); err != nil || f.localRefs("m") != up.refs() {
		t.Fatalf("sync after the right token: %v %+v", err, rec)
	}
	if recs, _ := f.store.MirrorSyncs("m", 0); len(recs) != 3 {
		t.Fatalf("update lost the sync history: %+v", recs)
	}

	// A webhook secret added by update is the one webhooks must carry.
	if _, err := f.mgr.Update(ctx, "m", mirror.Update{Credentials: map[string][]byte{mirror.CredWebhookSecret: []byte("new-secret")}}); err != nil {
		t.Fatal(err)
	}
	hooks := httptest.NewServer(f.mgr.WebhookHandler())
	defer hooks.Close()
	hook := func(secret string) int {
		req, _ := http.NewRequest("POST", hooks.URL+"/hooks/generic/m", bytes.NewBufferString("{}"))
		req.Header.Set("X-Fjord-Signature-256", sign(secret, "{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := hook("new-secret"); got != http.StatusAccepted {
		t.Fatalf("webhook with the new secret: %d", got)
	}
	if got := hook("right-token"); got != http.StatusUnauthorized {
		t.Fatalf("webhook with another secret: %d", got)
	}
	// Removing it: no secret, no webhook.
	if _, err := f.mgr.Update(ctx, "m", mirror.Update{RemoveCredentials: []string{mirror.CredWebhookSecret}}); err != nil {
		t.Fatal(err)
	}
	if got := hook("new-secret"); got != http.StatusUnauthorized {
		t.Fatalf("webhook after the secret was removed: %d", got)
	}

	// Three force-pushes, then retention 1.
	for i := 0; i < 3; i++ {
		git(t, up.work, "commit", "-q", "--amend", "-m", fmt.Sprintf("rewritten %d", i))
		git(t, up.work, "push", "-q", "--force", "origin", "main")
		if _, err := f.mgr.Sync(ctx, "m"); err != nil {
			t.Fatal(err)
		}
	}
	backups := func() int {
		out := git(t, "", "--git-dir", f.store.RepoPath("m"), "for-each-ref", "--format=%(refname)", "refs/fjord/backup/")
		return len(strings.Fields(out))
	}
	if n := backups(); n != 3 {
		t.Fatalf("%d backup refs after three force-pushes", n)
	}
	one, hour := 1, 2*time.Hour
	m, err := f.mgr.Update(ctx, "m", mirror.Update{Retention: &one, Interval: &hour})
	if err != nil {
		t.Fatal(err)
	}
	if m.Retention != 1 || m.Interval != hour {
		t.Fatalf("update returned %+v", m)
	}
	evs, _ := f.store.MirrorEvents("m", 0)
	if len(evs) != 1 || backups() != 1 {
		t.Fatalf("retention 1 kept %d events and %d backup refs", len(evs), backups())
	}
	if kept := git(t, "", "--git-dir", f.store.RepoPath("m"), "for-each-ref", "--format=%(refname)", "refs/fjord/backup/"); kept != evs[0].BackupRef {
		t.Fatalf("retention kept %s, want the newest event's %s", kept, evs[0].BackupRef)
	}

	// Refused updates change nothing.
	zero, tiny := 0, time.Millisecond
	for _, u := range []mirror.Update{
		{Retention: &zero},
		{Interval: &tiny},
		{RemoveCredentials: []string{mirror.CredSSHKey}}, // it has none
	} {
		if _, err := f.mgr.Update(ctx, "m", u); err == nil {
			t.Errorf("update %+v was accepted", u)
		}
	}
	if m2, _ := f.store.Mirror("m"); m2.Retention != 1 || m2.Interval != hour || len(m2.Credentials) != 1 {
		t.Fatalf("a refused update changed the mirror: %+v", m2)
	}
	if _, err := f.mgr.Update(ctx, "nope", mirror.Update{Interval: &hour}); err == nil {
		t.Fatal("update of a missing mirror succeeded")
	}
}
