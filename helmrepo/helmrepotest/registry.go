package helmrepotest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/registry"

	// The registry's in-memory storage and htpasswd auth register
	// themselves by name.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Registry is an OCI registry (distribution's, in memory) on a loopback
// port over TLS.
type Registry struct {
	t   testing.TB
	srv *httptest.Server

	user, password string
	plain          bool
}

// NewRegistry starts an empty registry; with Username and Password set it
// wants them (htpasswd, the registry's own basic auth). t.Cleanup stops it.
func NewRegistry(t testing.TB, o Options) *Registry {
	t.Helper()
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	cfg.HTTP.Secret = "helmrepotest"
	if o.Username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(o.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "htpasswd")
		if err := os.WriteFile(p, []byte(o.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "helmrepotest", "path": p}}
	}
	// The registry logs every request through logrus' standard logger;
	// its failures reach the test through the clients' errors.
	logrus.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	app := handlers.NewApp(ctx, cfg)
	r := &Registry{t: t, user: o.Username, password: o.Password, plain: o.PlainHTTP}
	if o.PlainHTTP {
		r.srv = httptest.NewServer(app)
	} else {
		r.srv = httptest.NewTLSServer(app)
	}
	t.Cleanup(func() {
		r.srv.Close()
		cancel()
	})
	return r
}

// Host is the registry's host:port.
func (r *Registry) Host() string {
	return strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "https://"), "http://")
}

// URL is an OCI repository URL in the registry: oci://HOST/charts.
func (r *Registry) URL() string { return "oci://" + r.Host() + "/charts" }

// TLSConfig trusts the registry's certificate (nil for plain HTTP).
func (r *Registry) TLSConfig() *tls.Config {
	if r.plain {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(r.srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

// Close stops the registry: it is down from now on.
func (r *Registry) Close() { r.srv.Close() }

// Push packages ch with the Helm SDK and pushes it with the Helm registry
// client to URL()/NAME:VERSION.
func (r *Registry) Push(ch *chart.Chart) {
	r.t.Helper()
	r.PushAt("", ch)
}

// PushAt is Push to URL()/DIR/NAME:VERSION, a chart deeper in the
// registry (chart: DIR/NAME in an Application).
func (r *Registry) PushAt(dir string, ch *chart.Chart) {
	r.t.Helper()
	opts := []registry.ClientOption{
		registry.ClientOptHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: r.TLSConfig()}}),
		registry.ClientOptCredentialsFile(filepath.Join(r.t.TempDir(), "registry.json")),
	}
	if r.user != "" {
		opts = append(opts, registry.ClientOptBasicAuth(r.user, r.password))
	}
	if r.plain {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	cl, err := registry.NewClient(opts...)
	if err != nil {
		r.t.Fatal(err)
	}
	// The client turns "+" into "_" in the tag itself, as helm push does.
	ref := r.Host() + "/charts/" + ch.Name() + ":" + ch.Metadata.Version
	if dir != "" {
		ref = r.Host() + "/charts/" + dir + "/" + ch.Name() + ":" + ch.Metadata.Version
	}
	if _, err := cl.Push(Package(r.t, ch), ref); err != nil {
		r.t.Fatalf("push %s: %v", ref, err)
	}
}
