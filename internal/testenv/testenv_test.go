package testenv_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestKubectl proves the environment is a real API server: kubectl
// server-side applies a ConfigMap, reads it back, and creates a namespace.
func TestKubectl(t *testing.T) {
	env := testenv.Shared(t)
	ns := env.Namespace(t)
	kubectl := lookKubectl(t)

	cm := `apiVersion: v1
kind: ConfigMap
metadata:
  name: greeting
  namespace: ` + ns + `
data:
  hello: fjord
`
	out := run(t, strings.NewReader(cm), kubectl, "--kubeconfig", env.Kubeconfig(),
		"apply", "--server-side", "--field-manager=fjord-testenv-test", "-f", "-")
	if !strings.Contains(out, "configmap/greeting serverside-applied") {
		t.Errorf("kubectl apply said %q, want configmap/greeting serverside-applied", out)
	}
	got := run(t, nil, kubectl, "--kubeconfig", env.Kubeconfig(),
		"get", "configmap", "greeting", "-n", ns, "-o", "jsonpath={.data.hello}|{.metadata.managedFields[0].manager}")
	if want := "fjord|fjord-testenv-test"; got != want {
		t.Errorf("kubectl get configmap = %q, want %q", got, want)
	}

	run(t, nil, kubectl, "--kubeconfig", env.Kubeconfig(), "create", "namespace", ns+"-made-by-kubectl")
	phase := run(t, nil, kubectl, "--kubeconfig", env.Kubeconfig(),
		"get", "namespace", ns+"-made-by-kubectl", "-o", "jsonpath={.status.phase}")
	if phase != "Active" {
		t.Errorf("namespace phase = %q, want Active", phase)
	}

	etcdPID, apiPID := testenv.PIDs(env)
	t.Logf("RSS after the test: etcd %s, kube-apiserver %s", rss(t, etcdPID), rss(t, apiPID))
}

// TestStartStop starts a second environment of its own to check startup,
// the admin credential and that Stop leaves nothing behind.
func TestStartStop(t *testing.T) {
	bins := binaries(t)
	start := time.Now()
	env, err := testenv.Start(t.Context(), testenv.Options{Binaries: bins, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ready in %v at %s", time.Since(start).Round(time.Millisecond), env.URL())
	etcdPID, apiPID := testenv.PIDs(env)
	t.Logf("RSS when ready: etcd %s, kube-apiserver %s", rss(t, etcdPID), rss(t, apiPID))

	// The admin token is allowed everything; no token is refused.
	resp, err := env.HTTPClient().Get(env.URL() + "/apis/rbac.authorization.k8s.io/v1/clusterroles")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("list clusterroles as admin: %s, want 200 OK", resp.Status)
	}
	if env.Token() == "" || !strings.HasPrefix(env.URL(), "https://127.0.0.1:") {
		t.Errorf("Token() = %q, URL() = %q", env.Token(), env.URL())
	}
	if _, err := os.Stat(env.CAFile()); err != nil {
		t.Errorf("CA file: %v", err)
	}

	// StopAPIServer takes the cluster away; StartAPIServer brings the
	// same one back, on the same port, with what etcd held.
	if err := env.CreateNamespace(t.Context(), "kept-across-restart"); err != nil {
		t.Fatal(err)
	}
	if err := env.StopAPIServer(); err != nil {
		t.Fatalf("StopAPIServer: %v", err)
	}
	if resp, err := env.HTTPClient().Get(env.URL() + "/readyz"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /readyz after StopAPIServer: %s, want no answer", resp.Status)
	}
	if err := env.StartAPIServer(t.Context()); err != nil {
		t.Fatalf("StartAPIServer: %v", err)
	}
	resp, err = env.HTTPClient().Get(env.URL() + "/api/v1/namespaces/kept-across-restart")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("namespace made before the restart: %s, want 200 OK", resp.Status)
	}
	etcdPID, apiPID = testenv.PIDs(env)

	dir := testenv.Dir(env)
	stopped := time.Now()
	if err := env.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(stopped).Round(time.Millisecond))
	if err := env.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, pid := range []int{etcdPID, apiPID} {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			t.Errorf("process %d still exists after Stop", pid)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s after Stop: %v, want it gone", dir, err)
	}
}

// TestStartFailureShowsLog checks that a kube-apiserver that will not start
// is reported with its own words, and that nothing is left running.
func TestStartFailureShowsLog(t *testing.T) {
	bins := binaries(t)
	dir := t.TempDir()
	_, err := testenv.Start(t.Context(), testenv.Options{Binaries: bins, Dir: dir, APIServerArgs: []string{"--no-such-flag"}})
	if err == nil {
		t.Fatal("Start with an unknown kube-apiserver flag succeeded")
	}
	for _, want := range []string{"kube-apiserver exited", "unknown flag: --no-such-flag"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error does not contain %q:\n%v", want, err)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("Start left %d entries in %s after failing", len(left), dir)
	}
}

// TestFindBinariesMissing checks the error a developer without the
// binaries sees names the command that builds them.
func TestFindBinariesMissing(t *testing.T) {
	t.Setenv(testenv.EnvCache, t.TempDir())
	t.Setenv(testenv.EnvKubeAPIServer, "")
	t.Setenv(testenv.EnvEtcd, "")
	_, err := testenv.FindBinaries()
	if !errors.Is(err, testenv.ErrBinariesMissing) {
		t.Fatalf("FindBinaries in an empty cache: %v, want ErrBinariesMissing", err)
	}
	if !strings.Contains(err.Error(), "make testenv") {
		t.Errorf("error does not name `make testenv`: %v", err)
	}
	_, err = testenv.Start(context.Background(), testenv.Options{})
	if !errors.Is(err, testenv.ErrBinariesMissing) {
		t.Errorf("Start in an empty cache: %v, want ErrBinariesMissing", err)
	}
}

// TestVersionsMatchTools checks that the versions the package looks for are
// the ones the tools modules and build.sh build.
func TestVersionsMatchTools(t *testing.T) {
	checks := []struct{ file, pattern, want string }{
		{"tools/kube-apiserver/go.mod", `(?m)^(?:require)?\s+k8s\.io/kubernetes (v\S+)$`, testenv.KubernetesVersion},
		{"tools/etcd/go.mod", `(?m)^(?:require)?\s+go\.etcd\.io/etcd/server/v3 (v\S+)$`, testenv.EtcdVersion},
		{"tools/build.sh", `(?m)^K8S_VERSION=(\S+)$`, testenv.KubernetesVersion},
		{"tools/build.sh", `(?m)^ETCD_VERSION=(\S+)$`, testenv.EtcdVersion},
	}
	for _, c := range checks {
		data, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(c.pattern).FindSubmatch(data)
		if m == nil {
			t.Errorf("%s: no match for %s", c.file, c.pattern)
			continue
		}
		if got := string(m[1]); got != c.want {
			t.Errorf("%s says %s, the package says %s", c.file, got, c.want)
		}
	}

	// Every staging module is replaced by the v0 release of the same tag.
	data, err := os.ReadFile("tools/kube-apiserver/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	staging := "v0" + strings.TrimPrefix(testenv.KubernetesVersion, "v1")
	replaces := regexp.MustCompile(`(?m)^\s+(k8s\.io/\S+) => (\S+) (v\S+)$`).FindAllSubmatch(data, -1)
	if len(replaces) < 20 {
		t.Errorf("tools/kube-apiserver/go.mod replaces %d staging modules, want all of them", len(replaces))
	}
	for _, r := range replaces {
		if string(r[1]) != string(r[2]) || string(r[3]) != staging {
			t.Errorf("tools/kube-apiserver/go.mod: %s => %s %s, want %s", r[1], r[2], r[3], staging)
		}
	}
}

// binaries finds the binaries for a test that starts an Env of its own,
// skipping or failing as Shared does.
func binaries(t *testing.T) testenv.Binaries {
	t.Helper()
	if os.Getenv(testenv.EnvSkip) == "1" {
		t.Skipf("%s=1: skipping a test that needs kube-apiserver", testenv.EnvSkip)
	}
	bins, err := testenv.FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

// lookKubectl finds kubectl, failing the test when it is missing: it is
// part of the machine image fjord builds on.
func lookKubectl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed to check the API server from outside Go: %v", err)
	}
	return path
}

// run runs a command with stdin and returns its trimmed stdout, failing
// the test with stderr if it fails.
func run(t *testing.T, stdin *strings.Reader, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// rss returns the resident set size of pid as /proc reports it.
func rss(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown"
}
