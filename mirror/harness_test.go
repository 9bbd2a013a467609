package mirror_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
)

// fixture is a fjord store with a running mirror manager.
type fixture struct {
	t     *testing.T
	store *storage.Store
	mgr   *mirror.Manager
	dir   string
}

func newFixture(t *testing.T, cfg mirror.Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	store, err := storage.Open(context.Background(), filepath.Join(dir, "data"), &storage.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Logger = store, log
	mgr, err := mirror.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		store.Close()
	})
	return &fixture{t: t, store: store, mgr: mgr, dir: dir}
}

// git runs the git CLI and fails the test on error.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Up", "GIT_AUTHOR_EMAIL=up@example.com", "GIT_COMMITTER_NAME=Up", "GIT_COMMITTER_EMAIL=up@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// upstream is a bare repo plus a work tree that pushes to it, as the
// upstream's developers would.
type upstream struct {
	t    testing.TB
	bare string
	work string
	n    int
}

func newUpstream(t testing.TB, root, name string) *upstream {
	t.Helper()
	u := &upstream{t: t, bare: filepath.Join(root, name+".git"), work: filepath.Join(t.TempDir(), "work-"+name)}
	git(t, "", "init", "-q", "--bare", "--initial-branch=main", u.bare)
	git(t, "", "init", "-q", "--initial-branch=main", u.work)
	git(t, u.work, "remote", "add", "origin", u.bare)
	u.commit()
	git(t, u.work, "push", "-q", "origin", "main")
	return u
}

// commit adds a commit on the current branch and returns its id.
func (u *upstream) commit() string {
	u.n++
	os.WriteFile(filepath.Join(u.work, fmt.Sprintf("f%d", u.n)), []byte(fmt.Sprintf("change %d\n", u.n)), 0o644)
	git(u.t, u.work, "add", ".")
	git(u.t, u.work, "commit", "-q", "-m", fmt.Sprintf("change %d", u.n))
	return git(u.t, u.work, "rev-parse", "HEAD")
}

func (u *upstream) push(args ...string) {
	git(u.t, u.work, append([]string{"push", "-q", "origin"}, args...)...)
}

// refs returns the upstream's branches and tags as git sees them.
func (u *upstream) refs() string {
	return git(u.t, "", "--git-dir", u.bare, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags")
}

func (f *fixture) localRefs(repo string) string {
	return git(f.t, "", "--git-dir", f.store.RepoPath(repo), "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags")
}

// httpUpstream serves root over real smart HTTP: git http-backend behind
// net/http/cgi. If token is set, requests need it as the basic-auth
// password.
func httpUpstream(t testing.TB, root, token string) (url string, stop func()) {
	t.Helper()
	h := newCGI(t, root)
	var handler http.Handler = h
	if token != "" {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, pw, ok := r.BasicAuth(); !ok || pw != token {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String(), func() { srv.Close() }
}

// newCGI returns git http-backend behind net/http/cgi for the repos in
// root, receive-pack enabled.
func newCGI(t testing.TB, root string) *cgi.Handler {
	return &cgi.Handler{
		Path: filepath.Join(git(t, "", "--exec-path"), "git-http-backend"),
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true"},
	}
}

// gitDaemon runs `git daemon` on root and returns its git:// base URL.
func gitDaemon(t testing.TB, root string) string {
	t.Helper()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), "--base-path="+root, root)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "git://" + addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("git daemon did not start")
	return ""
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
