package main_test

import (
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fjordhq/fjord/notify"
)

// TestNotifyCLI: fjord notify add with a secret, a real reconciler on a
// real API server, a receiver in the test. A sync that fails sends one
// signed sync-failed; `app sync` failing the same way sends nothing; the
// fix deploys and sends one deployed, retried while the receiver answers
// 500; notify list and history show it with the response codes.
func TestNotifyCLI(t *testing.T) {
	var (
		mu    sync.Mutex
		posts []struct {
			event, sig, id string
			body           []byte
			code           int
		}
		fail int
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		code := http.StatusNoContent
		if fail > 0 {
			fail--
			code = http.StatusInternalServerError
		}
		posts = append(posts, struct {
			event, sig, id string
			body           []byte
			code           int
		}{r.Header.Get(notify.HeaderEvent), r.Header.Get(notify.HeaderSignature), r.Header.Get(notify.HeaderDelivery), b, code})
		w.WriteHeader(code)
	}))
	defer rcv.Close()
	waitPosts := func(n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			got := len(posts)
			mu.Unlock()
			if got >= n {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("receiver got fewer than %d POSTs: %+v", n, posts)
	}

	env := startKube(t)
	s := newSession(t)
	s.start("--admin-key", s.key+".pub", "--kubeconfig", env.Kubeconfig())
	secret := filepath.Join(s.home, "hook.secret")
	os.WriteFile(secret, []byte("0123456789abcdef\n"), 0o600)
	if out, err := s.fjord("notify", "add", "chat", "--url", rcv.URL+"/hooks/fjord", "--on", "deploy"); err == nil || !strings.Contains(out, `unknown event "deploy"`) {
		t.Errorf("notify add --on deploy: %v\n%s", err, out)
	}
	if out := s.mustFjord("notify", "add", "chat", "--url", rcv.URL+"/hooks/fjord", "--on", "sync-failed,deployed", "--secret-file", secret, "--app", "web*"); !strings.Contains(out, "notifier chat added") || strings.Contains(out, "/hooks/fjord") {
		t.Fatalf("notify add:\n%s", out)
	}

	s.mustFjord("repo", "create", "gitops")
	os.WriteFile(filepath.Join(s.home, "known_hosts"), []byte(lastLine(s.mustFjord("hostkey"))+"\n"), 0o600)
	work := filepath.Join(s.dir, "work")
	s.mustGit("", "clone", "-q", "ssh://"+s.ssh+"/gitops.git", work)
	push := func(doc, msg string) string {
		t.Helper()
		os.WriteFile(filepath.Join(work, "cm.yaml"), []byte(doc), 0o644)
		s.mustGit(work, "add", ".")
		s.mustGit(work, "commit", "-q", "-m", msg)
		s.mustGit(work, "push", "-q", "origin", "HEAD:main")
		return s.mustGit(work, "rev-parse", "HEAD")
	}
	bad := push("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata: [not, a, map]\n", "broken")
	app := filepath.Join(s.dir, "app.yaml")
	os.WriteFile(app, []byte(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
spec:
  source:
    repoURL: gitops
  destination:
    name: in-cluster
    namespace: `+env.Namespace(t)+`
  syncPolicy:
    automated: {}
`), 0o644)
	s.fjord("app", "apply", "-f", app) // its sync fails
	waitPosts(1)
	if _, err := s.fjord("app", "sync", "web"); err == nil {
		t.Fatal("app sync of a broken render succeeded")
	}

	mu.Lock()
	fail = 1
	mu.Unlock()
	good := push("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  k: v\n", "fixed")
	waitPosts(3)
	deadline := time.Now().Add(60 * time.Second)
	var hist string
	for time.Now().Before(deadline) {
		hist = strings.Join(strings.Fields(s.mustFjord("notify", "history", "chat")), " ")
		if strings.Contains(hist, "deployed delivered 2 (500,204)") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 3 {
		t.Fatalf("receiver got %d POSTs, want 3 (sync-failed once despite the app sync, deployed twice: 500 then 204): %+v", len(posts), posts)
	}
	for i, want := range []string{"sync-failed", "deployed", "deployed"} {
		p := posts[i]
		if p.event != want || !hmac.Equal([]byte(p.sig), []byte(notify.Sign([]byte("0123456789abcdef"), p.body))) {
			t.Errorf("POST %d: event %s signature %s, want a signed %s", i, p.event, p.sig, want)
		}
	}
	var failed, deployed notify.Event
	json.Unmarshal(posts[0].body, &failed)
	json.Unmarshal(posts[2].body, &deployed)
	if failed.Commit != bad || failed.App != "web" || failed.Error == "" || deployed.Commit != good || posts[1].id != posts[2].id {
		t.Errorf("events: %+v %+v", failed, deployed)
	}
	if !strings.Contains(hist, "deployed delivered 2 (500,204)") || !strings.Contains(hist, "sync-failed delivered 1 (204)") {
		t.Errorf("notify history:\n%s", hist)
	}
	list := s.mustFjord("notify", "list")
	if !strings.Contains(list, "chat") || strings.Contains(list, "/hooks/fjord") || !strings.Contains(list, "web*") || !strings.Contains(list, "true") {
		t.Errorf("notify list (the URL's path hidden, signed):\n%s", list)
	}
	s.mustFjord("notify", "delete", "chat")
	if out := s.mustFjord("notify", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("notify list after delete: %s", out)
	}
}
