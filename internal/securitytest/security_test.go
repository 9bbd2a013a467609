package securitytest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/fjordtest"
	"github.com/fjordhq/fjord/internal/testenv"
	gossh "golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Secrets the sweep uses; none may appear in a log line, an error or
// anything a client is sent.
const (
	mirrorToken   = "mirror-token-5f1e0c2a9b7d"
	pushToken     = "push-token-8c3b1d0e6f2a"
	webhookSecret = "webhook-secret-2d9a7e4c1b"
)

// TestNegativeMatrix drives the real `fjord serve` with what it must
// refuse, one row each: unknown and revoked keys, a read grant pushing,
// path traversal, shells, ptys, port forwarding, environment variables,
// subsystems, oversized packets and pushes, and slowloris clients on SSH
// and HTTP. Every row must be refused and nothing under the data dir may
// change. Then the server's log and every output the test saw are
// scanned for each credential it used (mirror and push mirror tokens, the
// webhook secret, the cluster's bearer token): zero hits.
func TestNegativeMatrix(t *testing.T) {
	env := testenv.Shared(t)
	s := fjordtest.New(t)
	if err := s.Start("--kubeconfig", env.Kubeconfig(), "--idle-timeout", "3s", "--max-push-size", "1000000"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var seen bytes.Buffer // every output the test got back
	fjord := func(args ...string) string {
		t.Helper()
		out, err := s.Fjord(args...)
		seen.WriteString(out)
		if err != nil {
			t.Fatalf("fjord %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	// The setup: a repo with a commit, a reader, a revoked user, a mirror
	// of an https upstream that wants a token, a push mirror with a token,
	// a webhook secret.
	fjord("repo", "create", "app")
	work := filepath.Join(s.Dir, "work")
	s.Git(ctx, "", "init", "-q", "--initial-branch=main", work)
	os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644)
	s.Git(ctx, work, "add", ".")
	s.Git(ctx, work, "commit", "-q", "-m", "first")
	if out, err := s.Git(ctx, work, "push", "-q", s.URL("app"), "HEAD:main"); err != nil {
		t.Fatalf("push: %v %s", err, out)
	}
	reader := mustKey(t, s, "reader")
	fjord("user", "add", "reader", "--key", reader+".pub")
	fjord("grant", "reader", "app", "read")
	revoked := mustKey(t, s, "revoked")
	fjord("user", "add", "revoked", "--key", revoked+".pub")
	fjord("grant", "revoked", "app", "write")
	fjord("user", "delete", "revoked")
	unknown := mustKey(t, s, "unknown")

	upstream := httpUpstream(t, work)
	secrets := writeSecrets(t, s.Dir)
	fjord("mirror", "add", "up", "--interval", "1h", "--upstream", upstream+"/repo.git", "--token-file", secrets["token"], "--webhook-secret-file", secrets["webhook"])
	out, _ := s.Fjord("pushmirror", "add", "app", "--remote", "https://127.0.0.1:1/nowhere.git", "--token-file", secrets["push"])
	seen.WriteString(out)
	// A wrong and a right webhook signature.
	for _, secret := range []string{"wrong", webhookSecret} {
		body := []byte(`{"ref":"refs/heads/main"}`)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.HTTPAddr+"/hooks/generic/up", bytes.NewReader(body))
		req.Header.Set("X-Fjord-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen.Write(b)
		}
	}
	time.Sleep(3 * time.Second) // housekeeping of the new repos and the webhook's sync settle
	before := snapshot(t, s.Data)
	beforeState := state(t, s)
	// The slowloris clients take the longest; they run beside the rest.
	slowSSH, slowHTTP := make(chan error, 1), make(chan error, 1)
	go func() { slowSSH <- slowloris(s.SSHAddr, "SSH-2.0-", 45*time.Second) }()
	go func() { slowHTTP <- slowloris(s.HTTPAddr, "GET /healthz HTTP/1.1\r\nHost: x\r\n", 45*time.Second) }()

	bigRepo := filepath.Join(s.Dir, "big")
	s.Git(ctx, "", "clone", "-q", s.URL("app"), bigRepo)
	big := make([]byte, 3<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(bigRepo, "big.bin"), big, 0o644)
	s.Git(ctx, bigRepo, "add", ".")
	s.Git(ctx, bigRepo, "commit", "-q", "-m", "too big")

	type row struct {
		name string
		// try returns nil when the server refused, else what it let through.
		try func() error
	}
	gitRefused := func(key string, dir string, args ...string) func() error {
		return func() error {
			out, err := s.GitAs(ctx, key, dir, args...)
			seen.WriteString(out)
			if err == nil {
				return fmt.Errorf("git %s succeeded: %s", strings.Join(args, " "), out)
			}
			return nil
		}
	}
	rows := []row{
		{"unknown key", gitRefused(unknown, "", "ls-remote", s.URL("app"))},
		{"revoked key", gitRefused(revoked, "", "ls-remote", s.URL("app"))},
		{"read grant pushing", gitRefused(reader, work, "push", "-q", s.URL("app"), "HEAD:refs/heads/reader")},
		{"read grant deleting a branch", gitRefused(reader, work, "push", "-q", s.URL("app"), ":main")},
		{"traversal ../", gitRefused(s.Key, "", "ls-remote", "ssh://"+s.SSHAddr+"/../fjord.db")},
		{"traversal absolute", gitRefused(s.Key, "", "ls-remote", "ssh://"+s.SSHAddr+"/"+s.Data+"/repos/app.git")},
		{"traversal exec", func() error { return execRefused(s, "git-upload-pack '../../fjord.db'") }},
		{"shell command", func() error { return execRefused(s, "sh -c id") }},
		{"command injection", func() error { return execRefused(s, "git-upload-pack 'app.git'; touch /tmp/fjord-pwned") }},
		{"interactive shell", func() error { return sessionRefused(s, func(ss *gossh.Session) error { return ss.Shell() }) }},
		{"pty", func() error {
			return sessionRefused(s, func(ss *gossh.Session) error {
				return ss.RequestPty("xterm", 40, 80, gossh.TerminalModes{})
			})
		}},
		{"subsystem sftp", func() error {
			return sessionRefused(s, func(ss *gossh.Session) error { return ss.RequestSubsystem("sftp") })
		}},
		{"env GIT_TRACE", func() error { return envRefused(s, "GIT_TRACE", filepath.Join(s.Dir, "trace")) }},
		{"env LD_PRELOAD", func() error { return envRefused(s, "LD_PRELOAD", "/nonexistent.so") }},
		{"local port forwarding", func() error { return forwardRefused(s) }},
		{"remote port forwarding", func() error { return remoteForwardRefused(s) }},
		{"oversized pkt-line", func() error { return oversizedRefused(s) }},
		{"push over --max-push-size", gitRefused(s.Key, bigRepo, "push", "-q", s.URL("app"), "HEAD:refs/heads/big")},
		{"push to a mirror", gitRefused(s.Key, work, "push", "-q", s.URL("up"), "HEAD:refs/heads/x")},
		{"slowloris SSH", func() error { return <-slowSSH }},
		{"slowloris HTTP", func() error { return <-slowHTTP }},
	}
	for _, r := range rows {
		t.Run(strings.ReplaceAll(r.name, " ", "_"), func(t *testing.T) {
			if err := r.try(); err != nil {
				t.Errorf("not refused: %v", err)
			}
		})
	}

	if after := snapshot(t, s.Data); !equalMaps(before, after) {
		t.Errorf("the refused requests changed the data dir:\n%s", diffMaps(before, after))
	}
	if after := state(t, s); after != beforeState {
		t.Errorf("the refused requests changed what the server holds:\nbefore %s\nafter  %s", beforeState, after)
	}
	if _, err := os.Stat("/tmp/fjord-pwned"); err == nil {
		t.Errorf("command injection ran a command")
	}

	if err := s.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	logs := s.Log() + seen.String()
	hits := 0
	for name, secret := range map[string]string{"mirror token": mirrorToken, "push mirror token": pushToken,
		"webhook secret": webhookSecret, "cluster token": env.Token()} {
		if n := strings.Count(logs, secret); n > 0 {
			hits += n
			t.Errorf("the %s appears %d times in fjord's logs or outputs", name, n)
		}
	}
	fmt.Printf("security sweep: %d rows, every one refused unless reported above; data dir unchanged; %d log lines and outputs scanned for 4 credentials: %d hits\n",
		len(rows), strings.Count(logs, "\n"), hits)
}

func mustKey(t *testing.T, s *fjordtest.Server, name string) string {
	key, err := fjordtest.WriteKey(filepath.Join(s.Home, name))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// writeSecrets writes the credential files the CLI takes.
func writeSecrets(t *testing.T, dir string) map[string]string {
	files := map[string]string{"token": mirrorToken, "push": pushToken, "webhook": webhookSecret}
	paths := map[string]string{}
	for name, v := range files {
		p := filepath.Join(dir, name+".secret")
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		paths[name] = p
	}
	return paths
}

// httpUpstream serves a bare copy of work over real smart HTTP (git
// http-backend behind net/http/cgi), accepting only basic auth with the
// mirror token as password.
func httpUpstream(t *testing.T, work string) string {
	root := t.TempDir()
	if out, err := exec.Command("git", "clone", "-q", "--bare", work, filepath.Join(root, "repo.git")).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{Path: gitPath, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pass, ok := r.BasicAuth(); !ok || pass != mirrorToken {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// execRefused runs one exec request as the admin and wants it refused
// (a non-zero exit status).
func execRefused(s *fjordtest.Server, command string) error {
	c, err := s.Dial(s.Key)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	ss, err := c.NewSession()
	if err != nil {
		return nil // refused at the channel
	}
	defer ss.Close()
	out, err := ss.CombinedOutput(command)
	if err == nil {
		return fmt.Errorf("%q ran: %s", command, out)
	}
	return nil
}

// sessionRefused makes a request on a session and wants it refused: an
// error from the request, or the session closed with a failure before
// anything runs.
func sessionRefused(s *fjordtest.Server, req func(*gossh.Session) error) error {
	c, err := s.Dial(s.Key)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	ss, err := c.NewSession()
	if err != nil {
		return nil
	}
	defer ss.Close()
	if err := req(ss); err != nil {
		return nil
	}
	if err := ss.Wait(); err != nil {
		return nil // closed with a failure status
	}
	return fmt.Errorf("accepted, and the session ended successfully")
}

// envRefused wants a setenv request declined, and git run after it not to
// see the variable (GIT_TRACE would make git write to the path given).
func envRefused(s *fjordtest.Server, name, value string) error {
	c, err := s.Dial(s.Key)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	ss, err := c.NewSession()
	if err != nil {
		return err
	}
	defer ss.Close()
	if err := ss.Setenv(name, value); err == nil {
		return fmt.Errorf("setenv %s accepted", name)
	}
	ss.Stdin = strings.NewReader("0000")
	if _, err := ss.Output("git-upload-pack 'app.git'"); err != nil {
		return fmt.Errorf("git-upload-pack after the declined env: %w", err)
	}
	if _, err := os.Stat(value); err == nil {
		return fmt.Errorf("git saw %s=%s", name, value)
	}
	return nil
}

// forwardRefused opens a direct-tcpip channel to fjord's own HTTP port.
func forwardRefused(s *fjordtest.Server) error {
	c, err := s.Dial(s.Key)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	conn, err := c.Dial("tcp", s.HTTPAddr)
	if err != nil {
		return nil
	}
	conn.Close()
	return fmt.Errorf("direct-tcpip to %s accepted", s.HTTPAddr)
}

func remoteForwardRefused(s *fjordtest.Server) error {
	c, err := s.Dial(s.Key)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil
	}
	l.Close()
	return fmt.Errorf("tcpip-forward accepted")
}

// oversizedRefused sends upload-pack v2 a pkt-line whose length header
// exceeds the protocol's maximum (65520), then a stream of garbage; fjord
// must end the session with a failure.
func oversizedRefused(s *fjordtest.Server) error {
	c, err := s.Dial(s.Key)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	ss, err := c.NewSession()
	if err != nil {
		return nil
	}
	defer ss.Close()
	ss.Setenv("GIT_PROTOCOL", "version=2")
	ss.Stdin = io.MultiReader(strings.NewReader("ffffcommand=ls-refs\n"), io.LimitReader(rand.Reader, 1<<20))
	done := make(chan error, 1)
	go func() { _, err := ss.Output("git-upload-pack 'app.git'"); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			return fmt.Errorf("an oversized pkt-line was answered successfully")
		}
		return nil
	case <-time.After(20 * time.Second):
		return fmt.Errorf("no answer to an oversized pkt-line in 20s")
	}
}

// slowloris dribbles prefix one byte a second and wants the server to
// close the connection before limit.
func slowloris(addr, prefix string, limit time.Duration) error {
	// fjord's login grace time is 30 s, its HTTP header timeout 10 s.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, conn); close(closed) }()
	for i := 0; time.Since(start) < limit; i++ {
		select {
		case <-closed:
			return nil
		case <-time.After(time.Second):
		}
		if _, err := conn.Write([]byte{prefix[i%len(prefix)]}); err != nil {
			return nil
		}
	}
	return fmt.Errorf("a client sending a byte a second was still connected after %s", limit)
}

// state is what the database holds for people: repos with their heads,
// users and keys, grants, mirrors' configuration, and every repo's refs
// as served.
func state(t *testing.T, s *fjordtest.Server) string {
	var b strings.Builder
	for _, args := range [][]string{{"repo", "list", "-o", "json"}, {"user", "list", "-o", "json"}, {"grant", "list", "-o", "json"}} {
		out, err := s.Fjord(args...)
		if err != nil {
			t.Fatalf("fjord %s: %v %s", strings.Join(args, " "), err, out)
		}
		b.WriteString(out)
	}
	for _, repo := range []string{"app", "up"} {
		refs, err := s.ServedRefs(t.Context(), repo)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&b, refs)
	}
	return b.String()
}

// snapshot hashes every file under the data dir but the admin socket and
// the database, whose sync status and timestamps move by themselves
// (state compares what it holds).
func snapshot(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Type()&fs.ModeSocket != 0 || p == filepath.Join(dir, "fjord.db") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = hex.EncodeToString(sum[:8])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func diffMaps(a, b map[string]string) string {
	var lines []string
	for k, v := range a {
		if b[k] != v {
			lines = append(lines, fmt.Sprintf("changed or removed: %s", k))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			lines = append(lines, fmt.Sprintf("added: %s", k))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
