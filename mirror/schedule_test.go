package mirror_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
)

// TestUpstreamDownAndBack checks that a dead upstream keeps the last good
// state served, records a clear error, backs off, and recovers on its own.
func TestUpstreamDownAndBack(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	root := t.TempDir()
	up := newUpstream(t, root, "up")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	srv := &http.Server{Handler: gitHTTPHandler(t, root)}
	go srv.Serve(l)
	if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: "m", Upstream: "http://" + addr + "/up.git", Interval: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	before := f.localRefs("m")
	srv.Close()
	up.commit()
	up.push("main")
	rec, err := f.mgr.Sync(ctx, "m")
	if err == nil || !strings.Contains(rec.Error, "unreachable") {
		t.Fatalf("sync with upstream down: %+v %v", rec, err)
	}
	if f.localRefs("m") != before {
		t.Fatal("failed sync changed the mirror")
	}
	m, _ := f.store.Mirror("m")
	if m.Failures != 1 || m.LastError == "" || m.LastSuccess.IsZero() {
		t.Fatalf("status after failure: %+v", m)
	}
	// Back on the same address: the retry (5 s backoff) syncs by itself.
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv2 := &http.Server{Handler: gitHTTPHandler(t, root)}
	go srv2.Serve(l2)
	defer srv2.Close()
	// Refs move before the status is recorded, so wait for both.
	waitFor(t, "the backoff retry to sync and clear the error", func() bool {
		m, _ := f.store.Mirror("m")
		return f.localRefs("m") == up.refs() && m.Failures == 0 && m.LastError == ""
	})
}

func gitHTTPHandler(t *testing.T, root string) http.Handler { return newCGI(t, root) }

// TestScheduleAndStorm checks the interval schedule, and that a storm of
// triggers while a sync runs gives one running and one queued sync.
func TestScheduleAndStorm(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	root := t.TempDir()
	up := newUpstream(t, root, "up")
	var gate sync.Mutex
	var requests atomic.Int64
	cgi := newCGI(t, root)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		gate.Lock() // held by the test to keep a sync running
		gate.Unlock()
		cgi.ServeHTTP(w, r)
	}))
	defer srv.Close()
	if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: "m", Upstream: srv.URL + "/up.git", Interval: 300 * time.Millisecond}, nil); err != nil {
		t.Fatal(err)
	}
	// The schedule picks up a new commit without any trigger.
	up.commit()
	up.push("main")
	waitFor(t, "the scheduled sync", func() bool { return f.localRefs("m") == up.refs() })

	// Storm: hold the upstream, fire 50 triggers, release.
	if _, err := f.store.UpdateMirror("m", func(m *storage.Mirror) error { m.Interval = time.Hour; return nil }); err != nil {
		t.Fatal(err)
	}
	f.mgr.Sync(ctx, "m") // re-arm the timer with the hour interval
	n0 := len(syncs(t, f, "m"))
	gate.Lock()
	first := f.mgr.Trigger("m", "webhook")
	waitFor(t, "the first sync to reach the upstream", func() bool { return requests.Load() > 0 })
	var dones []<-chan struct{}
	for i := 0; i < 50; i++ {
		dones = append(dones, f.mgr.Trigger("m", "webhook"))
	}
	gate.Unlock()
	<-first
	for _, d := range dones {
		<-d
	}
	if got := len(syncs(t, f, "m")) - n0; got != 2 {
		t.Fatalf("a storm of 51 triggers ran %d syncs, want 2 (one running, one queued)", got)
	}
}

func syncs(t *testing.T, f *fixture, repo string) []storage.MirrorSync {
	s, err := f.store.MirrorSyncs(repo, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFiftyMirrors syncs 50 mirrors at once through the concurrency bound.
func TestFiftyMirrors(t *testing.T) {
	f := newFixture(t, mirror.Config{Concurrency: 4})
	ctx := context.Background()
	root := t.TempDir()
	url, _ := httpUpstream(t, root, "")
	var ups []*upstream
	for i := 0; i < 50; i++ {
		up := newUpstream(t, root, fmt.Sprintf("up%d", i))
		ups = append(ups, up)
		if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: fmt.Sprintf("m%d", i), Upstream: fmt.Sprintf("%s/up%d.git", url, i), Interval: time.Hour}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, up := range ups {
		up.commit()
		up.push("main")
	}
	var dones []<-chan struct{}
	for i := range ups {
		dones = append(dones, f.mgr.Trigger(fmt.Sprintf("m%d", i), "manual"))
	}
	for _, d := range dones {
		<-d
	}
	for i, up := range ups {
		if got := f.localRefs(fmt.Sprintf("m%d", i)); got != up.refs() {
			t.Errorf("mirror m%d not in sync", i)
		}
	}
}

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// TestWebhooks checks GitHub, GitLab and generic webhooks with good, bad
// and missing signatures.
func TestWebhooks(t *testing.T) {
	f := newFixture(t, mirror.Config{})
	ctx := context.Background()
	root := t.TempDir()
	up := newUpstream(t, root, "App")
	upURL := "file://" + up.bare
	if _, err := f.mgr.Add(ctx, storage.Mirror{Repo: "app", Upstream: upURL, Interval: time.Hour},
		map[string][]byte{mirror.CredWebhookSecret: []byte("hook-secret\n")}); err != nil {
		t.Fatal(err)
	}
	hooks := httptest.NewServer(f.mgr.WebhookHandler())
	defer hooks.Close()

	// GitHub sends URLs in other forms than the mirror's; they must match.
	ghBody := fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":"file://%s","ssh_url":"git@example.com:x/y.git"}}`, filepath.Dir(up.bare)+"/app.git")
	glBody := fmt.Sprintf(`{"object_kind":"push","project":{"git_http_url":"file://%s"}}`, up.bare)
	cases := []struct {
		name   string
		path   string
		body   string
		header map[string]string
		want   int
	}{
		{"github good", "/hooks/github", ghBody, map[string]string{"X-Hub-Signature-256": sign("hook-secret", ghBody), "X-GitHub-Event": "push"}, 202},
		{"github wrong", "/hooks/github", ghBody, map[string]string{"X-Hub-Signature-256": sign("nope", ghBody)}, 401},
		{"github missing", "/hooks/github", ghBody, nil, 401},
		{"github tampered", "/hooks/github", ghBody + " ", map[string]string{"X-Hub-Signature-256": sign("hook-secret", ghBody)}, 401},
		{"gitlab good", "/hooks/gitlab", glBody, map[string]string{"X-Gitlab-Token": "hook-secret"}, 202},
		{"gitlab wrong", "/hooks/gitlab", glBody, map[string]string{"X-Gitlab-Token": "hook-secreT"}, 401},
		{"gitlab missing", "/hooks/gitlab", glBody, nil, 401},
		{"generic good", "/hooks/generic/app", "{}", map[string]string{"X-Fjord-Signature-256": sign("hook-secret", "{}")}, 202},
		{"generic wrong", "/hooks/generic/app", "{}", map[string]string{"X-Fjord-Signature-256": sign("x", "{}")}, 401},
		{"generic unknown mirror", "/hooks/generic/other", "{}", map[string]string{"X-Fjord-Signature-256": sign("hook-secret", "{}")}, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n0 := len(syncs(t, f, "app"))
			before := f.localRefs("app")
			up.commit()
			up.push("main")
			req, _ := http.NewRequest("POST", hooks.URL+c.path, bytes.NewBufferString(c.body))
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			if c.want == 202 {
				// Refs move before the sync is recorded: wait for both.
				waitFor(t, "the webhook's sync", func() bool {
					return f.localRefs("app") == up.refs() && len(syncs(t, f, "app")) > n0
				})
				return
			}
			// A refused webhook triggers nothing.
			time.Sleep(200 * time.Millisecond)
			if got := len(syncs(t, f, "app")); got != n0 || f.localRefs("app") != before {
				t.Fatalf("a refused webhook triggered a sync")
			}
		})
	}
}

// TestResumeAfterRestart checks that mirrors are scheduled again when the
// manager starts on an existing store.
func TestResumeAfterRestart(t *testing.T) {
	root := t.TempDir()
	up := newUpstream(t, root, "up")
	dir := t.TempDir()
	store, err := storage.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, _ := mirror.New(mirror.Config{Store: store})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- mgr.Run(ctx) }()
	if _, err := mgr.Add(context.Background(), storage.Mirror{Repo: "m", Upstream: "file://" + up.bare, Interval: 200 * time.Millisecond}, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	store.Close()

	up.commit()
	up.push("main")
	store, err = storage.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	mgr, _ = mirror.New(mirror.Config{Store: store})
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go mgr.Run(ctx)
	waitFor(t, "the resumed mirror to sync", func() bool {
		return git(t, "", "--git-dir", store.RepoPath("m"), "rev-parse", "main") == git(t, "", "--git-dir", up.bare, "rev-parse", "main")
	})
}
