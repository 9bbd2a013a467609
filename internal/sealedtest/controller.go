package sealedtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure Start. Kubeconfig, Server and CAFile are required.
type Options struct {
	// Binaries are the files of the release to run. Zero means FindBinaries.
	Binaries Binaries

	// Kubeconfig is an admin kubeconfig of the API server (testenv's
	// Env.Kubeconfig): Start uses it with kubectl to create the
	// controller's namespace, ServiceAccount and RBAC, and a token.
	Kubeconfig string

	// Server is the API server's URL, https://HOST:PORT (Env.URL). The
	// controller reaches it through KUBERNETES_SERVICE_HOST and _PORT.
	Server string

	// CAFile is the PEM CA that verifies the API server (Env.CAFile); it
	// becomes the service account's ca.crt.
	CAFile string

	// Namespace is the controller's namespace, where it keeps its sealing
	// keys. Empty means kube-system, where the upstream chart installs it.
	Namespace string

	// Dir holds the service-account files and the controller's log. Empty
	// means a new temporary directory, removed by Stop.
	Dir string

	// StartTimeout bounds startup (the controller makes its first key
	// before it serves its certificate). Zero means two minutes.
	StartTimeout time.Duration
}

// Name is the name the controller runs under: its ServiceAccount, its
// ClusterRole and the ClusterRoleBinding, as the upstream chart names them.
const Name = "sealed-secrets-controller"

// serviceAccountDir is where rest.InClusterConfig reads its files.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Controller is a running Sealed Secrets controller.
type Controller struct {
	bins    Binaries
	dir     string
	ownDir  bool
	addr    string // its HTTP API: /healthz, /v1/cert.pem
	logPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // of cmd.Wait, set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start installs the controller's ServiceAccount and RBAC on the API
// server, then runs the controller in a mount namespace of its own with
// that account's token, ca.crt and namespace bound at
// /var/run/secrets/kubernetes.io/serviceaccount and
// KUBERNETES_SERVICE_HOST and _PORT pointing at opts.Server, and returns
// once it serves its sealing certificate. It needs root (for unshare -m
// and mount) and kubectl. ctx bounds startup only; the controller runs
// until Stop. It does not install the SealedSecret CRD: a test does that
// (Binaries.CRD) when it wants the cluster to have it; until then the
// controller keeps retrying its watch.
func Start(ctx context.Context, opts Options) (_ *Controller, err error) {
	if opts.Kubeconfig == "" || opts.Server == "" || opts.CAFile == "" {
		return nil, errors.New("sealedtest: Options need Kubeconfig, Server and CAFile")
	}
	bins := opts.Binaries
	if bins == (Binaries{}) {
		if bins, err = FindBinaries(); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sealedtest: the controller runs in a mount namespace of its own (unshare -m), which needs root")
	}
	u, err := url.Parse(opts.Server)
	if err != nil || u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("sealedtest: API server URL %q has no host and port", opts.Server)
	}
	ns := opts.Namespace
	if ns == "" {
		ns = "kube-system"
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	c := &Controller{bins: bins, dir: opts.Dir}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "fjord-sealedtest-"); err != nil {
			return nil, fmt.Errorf("sealedtest: make temp dir: %w", err)
		}
		c.ownDir = true
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()

	if _, err := kubectl(ctx, opts.Kubeconfig, rbac(ns), "apply", "-f", "-"); err != nil {
		return nil, err
	}
	// A bound token, as the kubelet projects into a pod; the duration
	// outlives any test.
	token, err := kubectl(ctx, opts.Kubeconfig, "", "-n", ns, "create", "token", Name, "--duration=24h")
	if err != nil {
		return nil, err
	}
	sa := filepath.Join(c.dir, "serviceaccount")
	if err := os.MkdirAll(sa, 0o755); err != nil {
		return nil, fmt.Errorf("sealedtest: %w", err)
	}
	ca, err := os.ReadFile(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("sealedtest: read CA: %w", err)
	}
	for name, data := range map[string][]byte{"token": []byte(strings.TrimSpace(token)), "ca.crt": ca, "namespace": []byte(ns)} {
		if err := os.WriteFile(filepath.Join(sa, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("sealedtest: write %s: %w", name, err)
		}
	}

	if c.addr, err = freeAddr(); err != nil {
		return nil, err
	}
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c.logPath = filepath.Join(c.dir, "controller.log")
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, fmt.Errorf("sealedtest: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor

	args := []string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", mountScript, "sh", sa,
		bins.Controller,
		"--listen-addr=" + c.addr,
		"--listen-metrics-addr=" + metrics,
		// 2048 rather than the default 4096 bits: the key is made at
		// every start, and a 4096-bit one costs seconds of CPU on a
		// machine shared with compilers. Nothing here depends on it.
		"--key-size=2048",
		"--log-info-stdout",
	}
	c.cmd = exec.Command("unshare", args...)
	c.cmd.Env = append(controllerEnv(), "KUBERNETES_SERVICE_HOST="+u.Hostname(), "KUBERNETES_SERVICE_PORT="+u.Port())
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	// The controller must not outlive a test binary that dies.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sealedtest: start controller: %w", err)
	}
	c.done = make(chan struct{})
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := c.waitCert(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// mountScript runs inside the new mount namespace, where mounts are
// private (the host sees none of them): it makes the service-account
// directory exist (on a tmpfs over the nearest existing parent, so
// nothing is created on the host's disk), binds $1 on it and execs the
// controller with the remaining arguments.
const mountScript = `set -e
sa=` + serviceAccountDir + `
if [ ! -d "$sa" ]; then
	for d in /var/run/secrets/kubernetes.io /var/run/secrets /var/run; do
		if [ -d "$d" ]; then
			mount -t tmpfs -o mode=0755,size=1m fjord-sealedtest "$(readlink -f "$d")"
			break
		fi
	done
	mkdir -p "$sa"
fi
mount --bind "$1" "$sa"
shift
exec "$@"`

// controllerEnv is the test's environment without what would point the
// controller anywhere but Start's choices.
func controllerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBERNETES_") && !strings.HasPrefix(kv, "KUBECONFIG=") && !strings.HasPrefix(kv, "POD_NAMESPACE=") {
			env = append(env, kv)
		}
	}
	return env
}

// waitCert polls the controller's certificate endpoint until it answers
// with a PEM certificate, the controller exits, or ctx is done.
func (c *Controller) waitCert(ctx context.Context) error {
	last := "no answer yet"
	for {
		select {
		case <-c.done:
			return fmt.Errorf("sealedtest: the controller exited at start (%v):\n%s", c.err, c.logTail())
		default:
		}
		pem, err := c.cert(ctx)
		if err == nil && bytes.Contains(pem, []byte("BEGIN CERTIFICATE")) {
			return nil
		}
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sealedtest: the controller served no certificate at %s: %w (last: %s)\n%s", c.CertURL(), context.Cause(ctx), last, c.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cert makes one request for the sealing certificate.
func (c *Controller) cert(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.CertURL(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %.200s", resp.Status, body)
	}
	return body, err
}

// CertURL is the URL of the controller's sealing certificate, the one
// `kubeseal --fetch-cert` fetches through the API server's service proxy
// in a real cluster. The test API server has no Service network to proxy
// to, so tests give this URL to kubeseal --cert instead.
func (c *Controller) CertURL() string { return "http://" + c.addr + "/v1/cert.pem" }

// Binaries are the files the controller runs from; Kubeseal and CRD are
// the same release's.
func (c *Controller) Binaries() Binaries { return c.bins }

// Log returns everything the controller logged so far.
func (c *Controller) Log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

func (c *Controller) logTail() string {
	s := c.Log()
	if len(s) > 3000 {
		s = "…" + s[len(s)-3000:]
	}
	return s
}

// Stop ends the controller (SIGTERM, then SIGKILL after ten seconds) and
// removes the temporary directory Start made. It is safe to call more
// than once and after a partial start. It returns an error if the
// controller had exited before Stop: the test then ran without it.
func (c *Controller) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		if c.cmd != nil && c.done != nil {
			select {
			case <-c.done:
				errs = append(errs, fmt.Errorf("sealedtest: the controller had exited before Stop (%v):\n%s", c.err, c.logTail()))
			default:
				_ = c.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-c.done:
				case <-time.After(10 * time.Second):
					_ = c.cmd.Process.Kill()
					<-c.done
				}
			}
		}
		if c.ownDir {
			if err := os.RemoveAll(c.dir); err != nil {
				errs = append(errs, fmt.Errorf("sealedtest: remove temp dir: %w", err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// kubectl runs kubectl against kubeconfig with stdin (if not empty) and
// returns its standard output; an error carries its standard error.
func kubectl(ctx context.Context, kubeconfig, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("sealedtest: kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("sealedtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// rbac is the controller's namespace, ServiceAccount, ClusterRole and
// binding: the rules of the upstream chart's ClusterRole
// (helm/sealed-secrets/templates/cluster-role.yaml), which also cover its
// Role in its own namespace (the sealing keys are Secrets there).
func rbac(ns string) string {
	return `apiVersion: v1
kind: Namespace
metadata:
  name: ` + ns + `
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ` + Name + `
  namespace: ` + ns + `
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: ` + Name + `
rules:
- apiGroups: [bitnami.com]
  resources: [sealedsecrets]
  verbs: [get, list, watch]
- apiGroups: [bitnami.com]
  resources: [sealedsecrets/status]
  verbs: [update]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, create, update, delete, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ` + Name + `
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: ` + Name + `
subjects:
- kind: ServiceAccount
  name: ` + Name + `
  namespace: ` + ns + `
`
}
