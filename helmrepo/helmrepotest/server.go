// Package helmrepotest serves real Helm chart repositories for tests: an
// HTTP repository (index.yaml and archives packaged with the Helm SDK) from
// net/http, with optional basic auth, and an OCI registry (distribution's
// registry as a library, in memory) on a loopback port.
package helmrepotest

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
)

// Server is an HTTP Helm repository served from a directory.
type Server struct {
	t   testing.TB
	dir string
	srv *httptest.Server

	user, password string

	mu        sync.Mutex
	idx       *repo.IndexFile
	onRequest func(*http.Request)

	// Requests counts the requests served (any path).
	Requests atomic.Int64
}

// Options configure NewServer; the zero value is a public repository.
type Options struct {
	// Username and Password, when set, make the repository want HTTP basic
	// auth for every request.
	Username, Password string
	// PlainHTTP serves a Registry over http instead of https.
	PlainHTTP bool
}

// NewServer starts an empty repository; t.Cleanup stops it.
func NewServer(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), user: o.Username, password: o.Password, idx: repo.NewIndexFile()}
	s.writeIndex()
	files := http.FileServer(http.Dir(s.dir))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Requests.Add(1)
		s.mu.Lock()
		hook := s.onRequest
		s.mu.Unlock()
		if hook != nil {
			hook(r)
		}
		if s.user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != s.user || p != s.password {
				w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the repository's URL (the directory of index.yaml).
func (s *Server) URL() string { return s.srv.URL + "/charts" }

// OnRequest calls fn with every request the server gets from now on.
func (s *Server) OnRequest(fn func(*http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRequest = fn
}

// Close stops the server: the repository is down from now on.
func (s *Server) Close() { s.srv.Close() }

// Chart returns a small chart: one ConfigMap named after the release whose
// data holds the chart version and the value "greeting".
func Chart(name, version string) *chart.Chart {
	return &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: name, Version: version, AppVersion: version, Type: "application"},
		Values:   map[string]any{"greeting": "hello"},
		Templates: []*chart.File{{Name: "templates/configmap.yaml", Data: []byte(`apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
data:
  version: {{ .Chart.Version | quote }}
  greeting: {{ .Values.greeting | quote }}
`)}},
	}
}

// Package writes ch as a .tgz with the Helm SDK and returns its bytes.
func Package(t testing.TB, ch *chart.Chart) []byte {
	t.Helper()
	dir := t.TempDir()
	p, err := chartutil.Save(ch, dir)
	if err != nil {
		t.Fatalf("package chart %s: %v", ch.Name(), err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Publish packages ch, adds the archive to the repository and its entry
// (with the archive's digest) to index.yaml.
func (s *Server) Publish(ch *chart.Chart) {
	s.t.Helper()
	s.PublishArchive(ch.Metadata, Package(s.t, ch), "")
}

// PublishArchive adds data as the archive of md, with digest in the index
// ("" means the archive's true sha256).
func (s *Server) PublishArchive(md *chart.Metadata, data []byte, digest string) {
	s.t.Helper()
	if digest == "" {
		sum := sha256.Sum256(data)
		digest = hex.EncodeToString(sum[:])
	}
	name := md.Name + "-" + md.Version + ".tgz"
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(s.dir, "charts"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "charts", filepath.Base(name)), data, 0o644); err != nil {
		s.t.Fatal(err)
	}
	mdCopy := *md
	if err := s.idx.MustAdd(&mdCopy, name, "", digest); err != nil {
		s.t.Fatalf("index %s: %v", name, err)
	}
	s.writeIndex()
}

// PublishEntry adds an index entry as given, without an archive: for
// hostile or broken indexes.
func (s *Server) PublishEntry(cv *repo.ChartVersion) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idx.Entries[cv.Name] = append(s.idx.Entries[cv.Name], cv)
	s.writeIndex()
}

// WriteRaw puts data at path (relative to the repository URL), e.g. a
// broken index.yaml.
func (s *Server) WriteRaw(path string, data []byte) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "charts", path), data, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) writeIndex() {
	s.idx.SortEntries()
	s.idx.Generated = time.Now()
	if err := os.MkdirAll(filepath.Join(s.dir, "charts"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	tmp := filepath.Join(s.dir, "charts", ".index.yaml")
	if err := s.idx.WriteFile(tmp, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "charts", "index.yaml")); err != nil {
		s.t.Fatal(err)
	}
}
