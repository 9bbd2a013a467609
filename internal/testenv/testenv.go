// Package testenv runs a real kube-apiserver backed by a real etcd for
// fjord's tests, so that the reconciler is tested against the API server it
// will meet in production rather than against a fake clientset.
//
// The two binaries are built from the Go module proxy by `make testenv`
// (tools/build.sh) into a cache outside the work tree; FindBinaries locates
// them. Start runs both on free loopback ports in a temporary directory and
// returns once /readyz answers; Stop ends them and removes the directory.
// There is no controller-manager, scheduler or kubelet: nothing reconciles
// Deployments into Pods, namespaces are never finalized after a delete, and
// a test that needs an object's status writes the status subresource itself.
//
// A test package usually shares one Env between its tests:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestApply(t *testing.T) {
//		env := testenv.Shared(t)
//		ns := env.Namespace(t)
//		// ... client-go or kubectl against env.Kubeconfig(), in ns
//	}
//
// This package depends only on the standard library, so that importing it
// brings no Kubernetes module into fjord's go.mod.
package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure Start. The zero value is ready to use.
type Options struct {
	// Binaries are the programs to run. Zero means FindBinaries.
	Binaries Binaries

	// Dir is the directory in which the Env's temporary directory is made.
	// Empty means os.TempDir.
	Dir string

	// StartTimeout bounds startup, on top of the context given to Start.
	// Zero means two minutes: kube-apiserver is ready in seconds on an idle
	// machine, but a test run shares its two cores with compilers.
	StartTimeout time.Duration

	// APIServerArgs are extra kube-apiserver flags, such as
	// "--feature-gates=...". They come after testenv's own, and the last
	// value of a flag wins, so they can also override testenv's choices.
	APIServerArgs []string
}

// defaultStartTimeout is the StartTimeout used when Options leave it zero.
const defaultStartTimeout = 2 * time.Minute

// serviceClusterIPRange is the range Services get their cluster IPs from.
// Nothing routes it; kube-apiserver only needs one to allocate from.
const serviceClusterIPRange = "10.0.0.0/24"

// Env is a running kube-apiserver and its etcd. Its methods are safe for
// concurrent use.
type Env struct {
	dir        string
	url        string
	creds      *credentials
	kubeconfig string
	client     *http.Client

	etcd *process

	// mu guards apiserver, which StopAPIServer and StartAPIServer
	// replace; apiArgs and apiPath start it again the same way.
	mu        sync.Mutex
	apiserver *process
	apiPath   string
	apiArgs   []string

	stopOnce sync.Once
	stopErr  error
}

// errPortTaken marks a startup that failed because a port found free was
// taken by someone else before the child bound it; Start tries again.
var errPortTaken = errors.New("port taken")

// portAttempts is how many times Start tries with fresh ports.
const portAttempts = 3

// Start starts etcd and kube-apiserver in a fresh temporary directory on
// free loopback ports and returns when kube-apiserver's /readyz answers ok.
// ctx bounds startup only; the processes run until Stop. On error nothing
// is left running and the error carries the last lines of the log of the
// process that failed.
func Start(ctx context.Context, opts Options) (*Env, error) {
	bins := opts.Binaries
	if bins == (Binaries{}) {
		var err error
		if bins, err = FindBinaries(); err != nil {
			return nil, err
		}
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	for attempt := 1; ; attempt++ {
		e, err := start(ctx, bins, opts)
		if err == nil {
			return e, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == portAttempts || ctx.Err() != nil {
			return nil, err
		}
	}
}

// start is one attempt of Start.
func start(ctx context.Context, bins Binaries, opts Options) (_ *Env, err error) {
	dir, err := os.MkdirTemp(opts.Dir, "fjord-testenv-")
	if err != nil {
		return nil, fmt.Errorf("testenv: make temp dir: %w", err)
	}
	e := &Env{dir: dir}
	defer func() {
		if err != nil {
			// The startup error is the one worth reporting; Stop's would
			// only repeat it.
			_ = e.Stop()
		}
	}()

	if e.creds, err = writeCredentials(dir); err != nil {
		return nil, err
	}
	// Three distinct ports, taken together so they differ from each other.
	// etcd needs a peer port even alone.
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	peerURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	e.url = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))

	e.client, err = newClient(e.creds)
	if err != nil {
		return nil, err
	}

	etcdArgs := []string{
		"--name=fjord-testenv",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=fjord-testenv=" + peerURL,
		// The data is thrown away at Stop, so durability buys nothing, and
		// fdatasync on a disk shared with other builds and benchmarks would
		// make every write in a test wait for it.
		"--unsafe-no-fsync",
	}
	e.etcd, err = startProcess("etcd", bins.Etcd, etcdArgs, dir, filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	// kube-apiserver would retry etcd by itself, but waiting here blames
	// the right process when etcd does not come up.
	if err := waitReady(ctx, e.etcd, http.DefaultClient, etcdURL+"/health", `"health":"true"`); err != nil {
		return nil, err
	}

	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		// Without it kube-apiserver looks for a host interface with a
		// default route to advertise, and fails on a machine with none.
		"--advertise-address=127.0.0.1",
		// The default reconciler would write 127.0.0.1 into the Endpoints
		// of the default/kubernetes Service every ten seconds, which
		// validation refuses for a loopback address, logging an error each
		// time. Nothing in a test reaches the API server through that
		// Service, so it is not reconciled at all.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(ports[2]),
		// --cert-dir is where kube-apiserver would write certificates it
		// makes; the serving certificate is given below, so nothing lands
		// there, but it must not default to a path outside the temp dir.
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + e.creds.certFile,
		"--tls-private-key-file=" + e.creds.keyFile,
		"--service-cluster-ip-range=" + serviceClusterIPRange,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + e.creds.saPublicKey,
		"--service-account-signing-key-file=" + e.creds.saPrivateKey,
		"--authorization-mode=RBAC",
		"--token-auth-file=" + e.creds.tokenFile,
		"--allow-privileged=true",
	}
	apiArgs = append(apiArgs, opts.APIServerArgs...)
	e.apiPath, e.apiArgs = bins.KubeAPIServer, apiArgs
	e.apiserver, err = startProcess("kube-apiserver", bins.KubeAPIServer, apiArgs, dir, filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, e.apiserver, e.client, e.url+"/readyz", "ok"); err != nil {
		return nil, err
	}

	e.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(e.kubeconfig, e.url, e.creds); err != nil {
		return nil, err
	}
	return e, nil
}

// Stop ends kube-apiserver and etcd and removes the temporary directory with
// their data and logs. It is safe to call more than once and after a
// partial start; later calls return the first call's result. It returns an
// error if either process had exited before Stop, since that means the
// tests ran against a dead server.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		e.mu.Lock()
		api := e.apiserver
		e.apiserver = nil
		e.mu.Unlock()
		// kube-apiserver first: stopped after etcd, it would spend its
		// grace period retrying the dead etcd.
		for _, p := range []*process{api, e.etcd} {
			if p != nil {
				errs = append(errs, p.stop())
			}
		}
		if err := os.RemoveAll(e.dir); err != nil {
			errs = append(errs, fmt.Errorf("testenv: remove temp dir: %w", err))
		}
		if e.client != nil {
			e.client.CloseIdleConnections()
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

// StopAPIServer stops kube-apiserver and leaves etcd, its data and the
// port: to clients, the cluster goes away. StartAPIServer brings the same
// cluster back. It returns an error if kube-apiserver had crashed.
func (e *Env) StopAPIServer() error {
	e.mu.Lock()
	p := e.apiserver
	e.apiserver = nil
	e.mu.Unlock()
	if p == nil {
		return errors.New("testenv: kube-apiserver is not running")
	}
	err := p.stop()
	if e.client != nil {
		e.client.CloseIdleConnections()
	}
	return err
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, with
// the same flags, port, credentials and etcd, so it serves the objects it
// served before; it returns once /readyz answers ok. The port may have
// been taken meanwhile; then it fails.
func (e *Env) StartAPIServer(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.apiserver != nil {
		return errors.New("testenv: kube-apiserver is already running")
	}
	ctx, cancel := context.WithTimeout(ctx, defaultStartTimeout)
	defer cancel()
	p, err := startProcess("kube-apiserver", e.apiPath, e.apiArgs, e.dir, filepath.Join(e.dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, e.client, e.url+"/readyz", "ok"); err != nil {
		_ = p.stop()
		return err
	}
	e.apiserver = p
	return nil
}

// URL returns the API server's base URL, https://127.0.0.1:PORT.
func (e *Env) URL() string { return e.url }

// Token returns the admin bearer token. It authenticates as a user in
// group system:masters, which every RBAC check lets through.
func (e *Env) Token() string { return e.creds.token }

// CAFile returns the path of the PEM CA certificate that verifies the API
// server's serving certificate.
func (e *Env) CAFile() string { return e.creds.caFile }

// Kubeconfig returns the path of a kubeconfig file with the admin
// credential, usable by kubectl --kubeconfig and by client-go's
// clientcmd.BuildConfigFromFlags.
func (e *Env) Kubeconfig() string { return e.kubeconfig }

// HTTPClient returns an HTTP client that trusts the API server and sends
// the admin token with every request, for tests that talk to the API
// directly.
func (e *Env) HTTPClient() *http.Client { return e.client }

// newClient returns an HTTP client that trusts the CA in c and
// authenticates with c's admin token.
func newClient(c *credentials) (*http.Client, error) {
	caPEM, err := os.ReadFile(c.caFile)
	if err != nil {
		return nil, fmt.Errorf("testenv: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("testenv: no certificate in %s", c.caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: &bearer{token: c.token, next: tr}}, nil
}

// bearer adds an Authorization header to each request.
type bearer struct {
	token string
	next  *http.Transport
}

func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport.
func (b *bearer) CloseIdleConnections() { b.next.CloseIdleConnections() }

// readyPoll is how often waitReady asks. Each try is one local HTTP request,
// so polling often costs nothing and trims startup.
const readyPoll = 100 * time.Millisecond

// waitReady polls url until it answers 200 with a body containing want,
// p exits, or ctx is done.
func waitReady(ctx context.Context, p *process, client *http.Client, url, want string) error {
	last := "no answer yet"
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		if p.exited() {
			err := p.exitError()
			if strings.Contains(p.logTail(), "address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		}
		ok, answer := probe(ctx, client, url, want)
		if ok {
			return nil
		}
		last = answer
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: %s not ready at %s: %w (last answer: %s)\n%s",
				p.name, url, context.Cause(ctx), last, p.logTail())
		case <-tick.C:
		}
	}
}

// probe makes one readiness request and says whether it passed and, if
// not, what came back.
func probe(ctx context.Context, client *http.Client, url, want string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
		return true, ""
	}
	return false, fmt.Sprintf("%s: %.500s", resp.Status, body)
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago. Another process may take one before the child binds it;
// Start notices "address already in use" and tries again.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testenv: find a free port: %w", err)
		}
		// Closed when freePorts returns, not now, so the next Listen
		// cannot be given the same port.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
