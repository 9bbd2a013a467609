package helmrepo_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fjordhq/fjord/helmrepo"
	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/repo"
)

// syncBuffer is a log sink the manager's goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	store *storage.Store
	mgr   *helmrepo.Manager
	logs  *syncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := storage.Open(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{store: st, logs: &syncBuffer{}}
	e.mgr = e.manager(t)
	return e
}

// manager returns a new Manager on the env's store: what a restart sees.
func (e *env) manager(t *testing.T) *helmrepo.Manager {
	t.Helper()
	m, err := helmrepo.New(helmrepo.Config{Store: e.store, Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run runs m until the test ends.
func run(t *testing.T, m *helmrepo.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// loadChart checks that path is a chart archive of name at version.
func loadChart(t *testing.T, path, name, version string) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	if ch.Name() != name || ch.Metadata.Version != version {
		t.Fatalf("%s holds %s %s, want %s %s", path, ch.Name(), ch.Metadata.Version, name, version)
	}
	return ch
}

func TestChartPublicRepoIsAddedByItself(t *testing.T) {
	e := newEnv(t)
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	for _, v := range []string{"1.0.0", "1.2.0", "2.0.0", "2.1.0-rc.1"} {
		srv.Publish(helmrepotest.Chart("demo", v))
	}
	ctx := context.Background()

	for _, tc := range []struct{ want, resolved string }{
		{"", "2.0.0"}, // newest stable, not the prerelease
		{"1.0.0", "1.0.0"},
		{"^1.0", "1.2.0"},
		{"~1.0.0", "1.0.0"},
		{">=1.0 <2.0", "1.2.0"},
		{"2.1.0-rc.1", "2.1.0-rc.1"},
	} {
		p, got, err := e.mgr.Chart(ctx, srv.URL()+"/", "demo", tc.want)
		if err != nil {
			t.Fatalf("Chart(%q): %v", tc.want, err)
		}
		if got != tc.resolved {
			t.Errorf("Chart(%q) resolved %s, want %s", tc.want, got, tc.resolved)
		}
		loadChart(t, p, "demo", tc.resolved)
		if !strings.HasPrefix(p, e.store.Dir()) {
			t.Errorf("path %s is not under the data dir %s", p, e.store.Dir())
		}
	}
	list, err := e.mgr.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].URL != srv.URL() || !list[0].Auto || list[0].LastFetch.IsZero() || list[0].LastError != "" {
		t.Fatalf("List = %+v, want one repo added by itself for %s", list, srv.URL())
	}
	if n := len(list[0].Charts); n != 4 {
		t.Errorf("%d charts kept, want 4 (1.0.0, 1.2.0, 2.0.0, 2.1.0-rc.1, each once)", n)
	}
	if !strings.Contains(e.logs.String(), "added by itself") {
		t.Errorf("no log line says the repository was added by itself:\n%s", e.logs)
	}

	// A kept exact version costs no request at all.
	before := srv.Requests.Load()
	p1, _, err := e.mgr.Chart(ctx, srv.URL(), "demo", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests.Load() - before; n != 0 {
		t.Errorf("a kept version made %d requests to the repository", n)
	}
	st1, _ := os.Stat(p1)
	p2, _, _ := e.mgr.Chart(ctx, srv.URL(), "demo", "1.0.0")
	st2, _ := os.Stat(p2)
	if p1 != p2 || !os.SameFile(st1, st2) {
		t.Errorf("the same version gave %s then %s (another file)", p1, p2)
	}

	// Unknown chart and unmatched range: clear errors naming what exists.
	_, _, err = e.mgr.Chart(ctx, srv.URL(), "dmeo", "")
	if !errors.Is(err, helmrepo.ErrNoVersion) || !strings.Contains(err.Error(), `did you mean "demo"`) {
		t.Errorf("unknown chart: %v", err)
	}
	_, _, err = e.mgr.Chart(ctx, srv.URL(), "demo", "^3")
	if !errors.Is(err, helmrepo.ErrNoVersion) || !strings.Contains(err.Error(), "2.0.0") {
		t.Errorf("unmatched range: %v", err)
	}
	_, _, err = e.mgr.Chart(ctx, srv.URL(), "demo", "not a version!")
	if err == nil || !strings.Contains(err.Error(), "semver range") {
		t.Errorf("bad range: %v", err)
	}
}

func TestChartWhileRepoIsDown(t *testing.T) {
	e := newEnv(t)
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	srv.Publish(helmrepotest.Chart("demo", "1.0.0"))
	srv.Publish(helmrepotest.Chart("demo", "1.1.0"))
	ctx := context.Background()
	if _, _, err := e.mgr.Chart(ctx, srv.URL(), "demo", "^1"); err != nil {
		t.Fatal(err)
	}
	srv.Close()

	// The same manager, and a fresh one (a restart: nothing in memory).
	for i, m := range []*helmrepo.Manager{e.mgr, e.manager(t)} {
		for _, want := range []string{"^1", "", "1.1.0"} {
			p, got, err := m.Chart(ctx, srv.URL(), "demo", want)
			if err != nil {
				t.Fatalf("manager %d, Chart(%q) with the repository down: %v", i, want, err)
			}
			if got != "1.1.0" {
				t.Errorf("manager %d, Chart(%q) = %s, want 1.1.0", i, want, got)
			}
			loadChart(t, p, "demo", "1.1.0")
		}
		// A version never fetched cannot come from a repository that is down,
		// and the error says so.
		_, _, err := m.Chart(ctx, srv.URL(), "demo", "1.0.0")
		if err == nil || !strings.Contains(err.Error(), "connect") {
			t.Errorf("manager %d: a version never kept, repository down: %v", i, err)
		}
	}
	// A refresh fails, is recorded, and the last good index stays.
	r, err := e.mgr.Refresh(ctx, mustFind(t, e.mgr, srv.URL()).Name)
	if err == nil || r.LastError == "" || r.Failures != 1 || r.LastFetch.IsZero() {
		t.Errorf("refresh of a repository that is down: %v, status %+v", err, r)
	}
	if _, _, err := e.mgr.Chart(ctx, srv.URL(), "demo", "^1"); err != nil {
		t.Errorf("after a failed refresh: %v", err)
	}
}

func mustFind(t *testing.T, m *helmrepo.Manager, nameOrURL string) storage.HelmRepo {
	t.Helper()
	r, err := m.Find(nameOrURL)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestChartPrivateRepo(t *testing.T) {
	e := newEnv(t)
	const pass = "s3cret-Pa55word"
	srv := helmrepotest.NewServer(t, helmrepotest.Options{Username: "ci", Password: pass})
	srv.Publish(helmrepotest.Chart("private", "0.1.0"))
	ctx := context.Background()

	_, _, err := e.mgr.Chart(ctx, srv.URL(), "private", "")
	if !errors.Is(err, helmrepo.ErrCredentials) || !strings.Contains(err.Error(), "fjord helmrepo add "+srv.URL()+" --username U --password-file") {
		t.Fatalf("a private repository not added yet: %v; want ErrCredentials and the helmrepo add command", err)
	}
	if list, _ := e.mgr.List(); len(list) != 0 {
		t.Fatalf("a repository that wants credentials was added by itself: %+v", list)
	}

	// Wrong credentials: refused, nothing added, the password nowhere.
	_, err = e.mgr.Add(ctx, storage.HelmRepo{URL: srv.URL()}, map[string][]byte{"username": []byte("ci"), "password": []byte("wrong-" + pass)})
	if !errors.Is(err, helmrepo.ErrCredentials) || strings.Contains(err.Error(), pass) {
		t.Fatalf("Add with a wrong password: %v", err)
	}
	if list, _ := e.mgr.List(); len(list) != 0 {
		t.Fatalf("a failed add left %+v", list)
	}

	// Directories an older fjord left 0755 are made private too.
	if err := os.MkdirAll(filepath.Join(e.store.HelmDir("private"), "charts"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := e.mgr.Add(ctx, storage.HelmRepo{URL: srv.URL(), Name: "private"}, map[string][]byte{"username": []byte("ci"), "password": []byte(pass + "\n")})
	if err != nil {
		t.Fatal(err)
	}
	p, v, err := e.mgr.Chart(ctx, srv.URL(), "private", "")
	if err != nil || v != "0.1.0" {
		t.Fatalf("Chart from the added private repository: %s %v", v, err)
	}
	loadChart(t, p, "private", "0.1.0")
	// A private repository's charts and index are as private as its
	// credentials.
	for _, f := range []string{p, filepath.Join(e.store.HelmDir(r.Name), "index.yaml")} {
		if st, err := os.Stat(f); err != nil {
			t.Error(err)
		} else if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v; want 0600", f, st.Mode().Perm())
		}
	}
	for _, d := range []string{filepath.Dir(p), e.store.HelmDir(r.Name)} {
		if st, err := os.Stat(d); err != nil {
			t.Error(err)
		} else if st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v; want 0700", d, st.Mode().Perm())
		}
	}

	dir := e.store.CredentialDir("helmrepo", r.Name)
	for _, f := range []string{"username", "password"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("credential %s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("credential dir: %v; want 0700", err)
	}
	stored, _ := e.store.HelmRepo(r.Name)
	if stored.URL != srv.URL() || len(stored.Credentials) != 2 {
		t.Errorf("stored %+v", stored)
	}
	if strings.Contains(e.logs.String(), pass) {
		t.Errorf("the password is in the logs:\n%s", e.logs)
	}
	if _, err := e.mgr.Add(ctx, storage.HelmRepo{URL: "https://ci:" + pass + "@charts.example.com"}, nil); err == nil || strings.Contains(err.Error(), pass) {
		t.Errorf("a URL with a password: %v", err)
	}

	// Delete by URL removes the record, the credentials and the kept charts.
	if _, err := e.mgr.Delete(ctx, srv.URL()); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{dir, e.store.HelmDir(r.Name)} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s is still there after delete (%v)", gone, err)
		}
	}
	if cs, _ := e.store.HelmCharts(r.Name); len(cs) != 0 {
		t.Errorf("chart records left after delete: %+v", cs)
	}
}

func TestNewVersionPickedAfterInterval(t *testing.T) {
	e := newEnv(t)
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	srv.Publish(helmrepotest.Chart("demo", "1.0.0"))
	ctx := context.Background()
	r, err := e.mgr.Add(ctx, storage.HelmRepo{URL: srv.URL(), Interval: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, e.mgr)
	if _, v, err := e.mgr.Chart(ctx, srv.URL(), "demo", "^1"); err != nil || v != "1.0.0" {
		t.Fatalf("Chart(^1) = %s, %v", v, err)
	}
	published := time.Now()
	srv.Publish(helmrepotest.Chart("demo", "1.1.0"))
	// Wait for a scheduled read that started after the publish.
	deadline := time.Now().Add(time.Minute)
	for {
		cur, err := e.store.HelmRepo(r.Name)
		if err != nil {
			t.Fatal(err)
		}
		if cur.LastFetch.After(published) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled index read in a minute with a 300ms interval: %+v", cur)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p, v, err := e.mgr.Chart(ctx, srv.URL(), "demo", "^1")
	if err != nil || v != "1.1.0" {
		t.Fatalf("after the interval, Chart(^1) = %s, %v; want 1.1.0", v, err)
	}
	loadChart(t, p, "demo", "1.1.0")
}

func TestExactVersionJustPublishedIsFetched(t *testing.T) {
	e := newEnv(t)
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	srv.Publish(helmrepotest.Chart("demo", "1.0.0"))
	ctx := context.Background()
	if _, _, err := e.mgr.Chart(ctx, srv.URL(), "demo", ""); err != nil {
		t.Fatal(err)
	}
	// Make the kept index older than the re-read threshold.
	idx := filepath.Join(e.store.HelmDir(mustFind(t, e.mgr, srv.URL()).Name), "index.yaml")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(idx, old, old); err != nil {
		t.Fatal(err)
	}
	srv.Publish(helmrepotest.Chart("demo", "1.0.1"))
	m := e.manager(t) // reads the index (and its age) from disk
	if _, v, err := m.Chart(ctx, srv.URL(), "demo", "1.0.1"); err != nil || v != "1.0.1" {
		t.Fatalf("a version published after the last index read: %s, %v", v, err)
	}
}

func TestDigestMismatchIsRefused(t *testing.T) {
	e := newEnv(t)
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	good := helmrepotest.Chart("demo", "1.0.0")
	srv.Publish(good)
	bad := helmrepotest.Chart("demo", "1.1.0")
	srv.PublishArchive(bad.Metadata, helmrepotest.Package(t, bad), strings.Repeat("ab", 32))
	ctx := context.Background()

	_, _, err := e.mgr.Chart(ctx, srv.URL(), "demo", "1.1.0")
	if !errors.Is(err, helmrepo.ErrDigest) || !strings.Contains(err.Error(), "the index says sha256:"+strings.Repeat("ab", 32)) || !strings.Contains(err.Error(), "nothing was kept") {
		t.Fatalf("digest mismatch: %v", err)
	}
	r := mustFind(t, e.mgr, srv.URL())
	if cs, _ := e.store.HelmCharts(r.Name); len(cs) != 0 {
		t.Fatalf("a chart with the wrong digest was recorded: %+v", cs)
	}
	if _, err := os.Stat(filepath.Join(e.store.HelmDir(r.Name), "charts", "demo-1.1.0.tgz")); !os.IsNotExist(err) {
		t.Fatalf("a chart with the wrong digest is on disk: %v", err)
	}
	if _, v, err := e.mgr.Chart(ctx, srv.URL(), "demo", "1.0.0"); err != nil || v != "1.0.0" {
		t.Fatalf("the good version next to a bad one: %s, %v", v, err)
	}
}

// tgz builds a gzipped tar of the given files, in order.
func tgz(t *testing.T, files [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestHostileNamesAndArchivesAreRefused(t *testing.T) {
	e := newEnv(t)
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	srv.Publish(helmrepotest.Chart("demo", "1.0.0"))
	ctx := context.Background()

	for _, name := range []string{"../demo", "../../etc/passwd", "a/b", "..", ".hidden", "demo\x00", ""} {
		if _, _, err := e.mgr.Chart(ctx, srv.URL(), name, ""); err == nil || !strings.Contains(err.Error(), "chart name") {
			t.Errorf("Chart(name %q): %v; want a refused chart name", name, err)
		}
	}

	chartYAML := "apiVersion: v2\nname: evil\nversion: 1.0.0\n"
	// An archive that writes outside its chart directory.
	srv.PublishArchive(&chart.Metadata{APIVersion: "v2", Name: "evil", Version: "1.0.0"},
		tgz(t, [][2]string{{"evil/Chart.yaml", chartYAML}, {"evil/../../escaped.yaml", "x: 1\n"}}), "")
	// An archive whose Chart.yaml is another chart than its index entry.
	srv.PublishArchive(&chart.Metadata{APIVersion: "v2", Name: "evil", Version: "2.0.0"},
		tgz(t, [][2]string{{"other/Chart.yaml", "apiVersion: v2\nname: other\nversion: 2.0.0\n"}}), "")
	// An index entry whose URL and version try to climb out.
	srv.PublishEntry(&repo.ChartVersion{Metadata: &chart.Metadata{APIVersion: "v2", Name: "climb", Version: "1.0.0"}, URLs: []string{"../../../../etc/passwd"}})
	srv.PublishEntry(&repo.ChartVersion{Metadata: &chart.Metadata{APIVersion: "v2", Name: "file", Version: "1.0.0"}, URLs: []string{"file:///etc/passwd"}})

	for _, tc := range []struct{ name, version, want string }{
		{"evil", "1.0.0", "not a chart Helm can load"},
		{"evil", "2.0.0", `the archive holds chart "other"`},
		{"climb", "1.0.0", "download"},
		{"file", "1.0.0", "is not http(s)"},
	} {
		_, _, err := e.mgr.Chart(ctx, srv.URL(), tc.name, tc.version)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Chart(%s %s): %v; want %q", tc.name, tc.version, err, tc.want)
		}
	}
	r := mustFind(t, e.mgr, srv.URL())
	if cs, _ := e.store.HelmCharts(r.Name); len(cs) != 0 {
		t.Errorf("hostile charts were kept: %+v", cs)
	}
	filepath.Walk(e.store.Dir(), func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(info.Name(), "escaped") {
			t.Errorf("an archive wrote %s", p)
		}
		return nil
	})

	// A broken index does not replace the last good one.
	if _, _, err := e.mgr.Chart(ctx, srv.URL(), "demo", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	srv.WriteRaw("index.yaml", []byte("this is: [not an index"))
	if _, err := e.mgr.Refresh(ctx, r.Name); err == nil || !strings.Contains(err.Error(), "not a Helm repository index") {
		t.Errorf("refresh with a broken index: %v", err)
	}
	if _, v, err := e.manager(t).Chart(ctx, srv.URL(), "demo", "^1"); err != nil || v != "1.0.0" {
		t.Errorf("after a broken index: %s, %v; want the last good index's 1.0.0", v, err)
	}
}

func TestBadURLs(t *testing.T) {
	if _, err := helmrepo.NormalizeURL("user:s3cret@charts.example.com"); err == nil || !strings.Contains(err.Error(), "credentials do not belong in the URL") {
		t.Errorf("NormalizeURL(user:s3cret@host) = %v; want the credentials message", err)
	}
	for _, u := range []string{"", "charts.example.com", "ftp://x/y", "https://u:p@x/y", "https://x/y?token=abc", "oci://registry.example.com", "https:///path",
		"u:s3cret@charts.example.com", "u:s3cret@charts.example.com/stable", "ftp:u:s3cret/x", "u@abc"} {
		if _, err := helmrepo.NormalizeURL(u); err == nil {
			t.Errorf("NormalizeURL(%q) accepted", u)
		} else if strings.Contains(err.Error(), "u:p") || strings.Contains(err.Error(), "abc") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("NormalizeURL(%q): the error shows the secret: %v", u, err)
		}
	}
	for in, want := range map[string]string{
		"HTTPS://Charts.Example.com/stable/": "https://charts.example.com/stable",
		"oci://ghcr.io/org/charts":           "oci://ghcr.io/org/charts",
		"http://127.0.0.1:8080":              "http://127.0.0.1:8080",
	} {
		if got, err := helmrepo.NormalizeURL(in); err != nil || got != want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestConcurrentCallersShareOneDownload(t *testing.T) {
	e := newEnv(t)
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	srv.Publish(helmrepotest.Chart("demo", "1.0.0"))
	ctx := context.Background()
	var wg sync.WaitGroup
	paths := make([]string, 16)
	errs := make([]error, 16)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], _, errs[i] = e.mgr.Chart(ctx, srv.URL(), "demo", "^1")
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("caller %d: %s, %v (caller 0: %s)", i, paths[i], errs[i], paths[0])
		}
	}
	// One index read (the add) and one archive download, however many
	// callers.
	if n := srv.Requests.Load(); n != 2 {
		t.Errorf("%d requests to the repository for 16 concurrent callers, want 2", n)
	}
	if list, _ := e.mgr.List(); len(list) != 1 || len(list[0].Charts) != 1 {
		t.Errorf("List = %+v, want one repository keeping one chart", list)
	}
}

// An index may point its archives at another host (a CDN): they are
// fetched from there, but the repository's credentials stay with the
// repository.
func TestCredentialsStayWithTheRepositoryHost(t *testing.T) {
	e := newEnv(t)
	const pass = "host-Pa55word"
	cdn := helmrepotest.NewServer(t, helmrepotest.Options{})
	ch := helmrepotest.Chart("demo", "1.0.0")
	cdn.Publish(ch)
	var sawAuth atomic.Bool
	cdn.OnRequest(func(r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Store(true)
		}
	})
	srv := helmrepotest.NewServer(t, helmrepotest.Options{Username: "ci", Password: pass})
	data := helmrepotest.Package(t, ch)
	sum := sha256.Sum256(data)
	srv.PublishEntry(&repo.ChartVersion{Metadata: ch.Metadata, URLs: []string{cdn.URL() + "/demo-1.0.0.tgz"}, Digest: hex.EncodeToString(sum[:])})
	ctx := context.Background()
	if _, err := e.mgr.Add(ctx, storage.HelmRepo{URL: srv.URL()}, map[string][]byte{"username": []byte("ci"), "password": []byte(pass)}); err != nil {
		t.Fatal(err)
	}
	p, _, err := e.mgr.Chart(ctx, srv.URL(), "demo", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	loadChart(t, p, "demo", "1.0.0")
	if sawAuth.Load() {
		t.Error("the repository's credentials were sent to the host its index points archives at")
	}
}

func TestMetricsCountLocalAndFetchedCharts(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	m, err := helmrepo.New(helmrepo.Config{Store: e.store, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	srv.Publish(helmrepotest.Chart("demo", "1.0.0"))
	ctx := context.Background()
	for range 3 {
		if _, _, err := m.Chart(ctx, srv.URL(), "demo", ""); err != nil {
			t.Fatal(err)
		}
	}
	m.Chart(ctx, srv.URL(), "nope", "")
	srv.Close()
	m.Refresh(ctx, mustFind(t, m, srv.URL()).Name)
	for outcome, want := range map[string]float64{"local": 2, "fetched": 1, "failed": 1} {
		if got := metric(t, reg, "fjord_helmrepo_chart_requests_total", "outcome", outcome); got != want {
			t.Errorf("chart requests %s = %v, want %v", outcome, got, want)
		}
	}
	if got := metric(t, reg, "fjord_helmrepo_index_failures_total", "helmrepo", mustFind(t, m, srv.URL()).Name); got != 1 {
		t.Errorf("index failures = %v, want 1", got)
	}
}

// metric returns the value of the series of family name whose label is
// value.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
