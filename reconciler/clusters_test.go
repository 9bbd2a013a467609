package reconciler_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/fjordhq/fjord/internal/testenv"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// otherCluster starts a kube-apiserver with its own etcd for one test:
// a second cluster beside the shared one.
func otherCluster(t testing.TB) (*testenv.Env, dynamic.Interface) {
	t.Helper()
	if os.Getenv(testenv.EnvSkip) == "1" {
		t.Skipf("%s=1: skipping a test that needs kube-apiserver", testenv.EnvSkip)
	}
	env, err := testenv.Start(context.Background(), testenv.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	cfg, _, err := reconciler.LoadRESTConfig(env.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return env, dyn
}

// clusterApp is an automated, self-healing app of path in repo gitops,
// deploying to dest (a destination line: "name: X" or "server: URL").
func clusterApp(name, path, dest, ns string) []byte {
	return fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
spec:
  source:
    repoURL: gitops
    path: %s
  destination:
    %s
    namespace: %s
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
    - CreateNamespace=true
`, name, path, dest, ns)
}

// syncedBuffer is a log sink safe for the reconciler's goroutines.
type syncedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func cmValue(t testing.TB, dyn dynamic.Interface, ns, name string) string {
	t.Helper()
	u, err := dyn.Resource(gvrCM).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "(" + err.Error() + ")"
	}
	v, _, _ := unstructured.NestedString(u.Object, "data", "k")
	return v
}

func cmWith(name, value string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  k: " + value + "\n"
}

// TestSeveralClusters deploys to two real API servers, each with its own
// etcd: apps on each sync there and only there, drift on the second is
// reverted, the second going away marks its apps Unknown while the
// first's keep syncing, and its return is noticed without help. A cluster
// in use cannot be deleted, and its credentials reach no log or error.
func TestSeveralClusters(t *testing.T) {
	c1 := newCluster(t)
	env2, dyn2 := otherCluster(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	store := openStore(t, dataDir)
	w := newWork(t, store, "gitops", "")
	w.write("one/cm.yaml", cmWith("settings", "one-v1"))
	w.write("two/cm.yaml", cmWith("settings", "two-v1"))
	w.write("three/cm.yaml", cmWith("other", "three-v1"))
	w.commit("three apps")
	logs := &syncedBuffer{}
	counter := &hostCounter{n: map[string]int{}}
	rec, _ := c1.start(store, func(cfg *reconciler.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg.WrapTransport = counter.wrap
	})

	// Adding: a wrong context and an unreachable server are refused with
	// what to do; the real one is checked and stored.
	if _, _, err := reconciler.ClusterFromKubeconfig(env2.Kubeconfig(), "nope"); err == nil || !strings.Contains(err.Error(), `no context "nope": use one of fjord-testenv`) {
		t.Errorf("wrong context: %v", err)
	}
	cl, creds, err := reconciler.ClusterFromKubeconfig(env2.Kubeconfig(), "")
	if err != nil {
		t.Fatal(err)
	}
	if creds.Token != env2.Token() || len(creds.CA) == 0 || cl.Server != env2.URL() {
		t.Fatalf("from the kubeconfig: %+v, token read %v, CA %d bytes", cl, creds.Token == env2.Token(), len(creds.CA))
	}
	away := cl
	away.Name, away.Server = "away", "https://127.0.0.1:1"
	if _, err := rec.AddCluster(ctx, away, creds, false); err == nil || !rec.IsClusterRefused(err) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable cluster: %v", err)
	}
	if _, err := store.Cluster("away"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("an unreachable cluster was stored: %v", err)
	}
	cl.Name = "second"
	version, err := rec.AddCluster(ctx, cl, creds, false)
	if err != nil || !strings.HasPrefix(version, "v1.") {
		t.Fatalf("add second: %q %v", version, err)
	}
	if _, err := rec.AddCluster(ctx, cl, creds, false); !errors.Is(err, storage.ErrExists) {
		t.Errorf("adding the same name again without replace: %v", err)
	}
	sc, err := store.Cluster("second")
	if err != nil || strings.Join(sc.Credentials, ",") != "ca.crt,token" {
		t.Fatalf("stored: %+v %v", sc, err)
	}
	for _, f := range sc.Credentials {
		fi, err := os.Stat(filepath.Join(store.CredentialDir("cluster", "second"), f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("credential %s: %v %v, want mode 0600", f, fi, err)
		}
	}

	ns1, ns2 := c1.env.Namespace(t), "on-second"
	// A project's destination names the cluster; an app of it that gives
	// the server matches, as in Argo CD.
	if _, err := rec.ApplyProject([]byte("apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: second-only\nspec:\n  sourceRepos: ['*']\n  destinations:\n  - name: second\n    namespace: '*'\n  clusterResourceWhitelist:\n  - group: ''\n    kind: Namespace\n")); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct{ name, path, dest, ns string }{
		{"one", "one", "name: in-cluster", ns1},
		{"two", "two", "name: second", ns2},
		{"three", "three", "server: " + env2.URL(), ns2},
	} {
		doc := clusterApp(a.name, a.path, a.dest, a.ns)
		if a.name == "three" {
			doc = []byte(strings.Replace(string(doc), "spec:\n", "spec:\n  project: second-only\n", 1))
		}
		got, err := rec.Apply(ctx, doc)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Sync != storage.Synced {
			t.Fatalf("app %s: %s: %s", a.name, got.Status.Sync, got.Status.Error)
		}
	}
	if _, err := rec.Apply(ctx, clusterApp("nowhere", "one", "name: nowhere", ns1)); !errors.Is(err, reconciler.ErrInvalidApp) || !strings.Contains(err.Error(), "fjord cluster add nowhere") {
		t.Errorf("an app on a cluster fjord does not know: %v", err)
	}
	refused := strings.Replace(string(clusterApp("wrong", "one", "name: in-cluster", ns1)), "spec:\n", "spec:\n  project: second-only\n", 1)
	if _, err := rec.Apply(ctx, []byte(refused)); !errors.Is(err, reconciler.ErrInvalidApp) || !strings.Contains(err.Error(), "not in the project's destinations") {
		t.Errorf("an app of project second-only on in-cluster: %v", err)
	}
	if got := cmValue(t, c1.dyn, ns1, "settings"); got != "one-v1" {
		t.Errorf("app one on the first cluster: %s", got)
	}
	if got := cmValue(t, dyn2, ns2, "settings"); got != "two-v1" {
		t.Errorf("app two on the second cluster: %s", got)
	}
	if got := cmValue(t, dyn2, ns2, "other"); got != "three-v1" {
		t.Errorf("app three (by server URL) on the second cluster: %s", got)
	}
	if _, err := c1.dyn.Resource(gvrNS).Get(ctx, ns2, metav1.GetOptions{}); err == nil {
		t.Errorf("namespace %s of the second cluster's apps exists on the first", ns2)
	}
	if _, err := dyn2.Resource(gvrCM).Namespace(ns2).Get(ctx, "fjord-inventory.two", metav1.GetOptions{}); err != nil {
		t.Errorf("app two's inventory copy is not on its cluster: %v", err)
	}

	// A resync of the unchanged apps sends neither cluster a request.
	counter.on.Store(true)
	for _, app := range []string{"one", "two", "three"} {
		if rec, err := rec.Sync(ctx, app, reconciler.SyncOptions{}); err != nil || len(rec.Changes) > 0 {
			t.Fatalf("resync of %s: %v %+v", app, err, rec.Changes)
		}
	}
	counter.on.Store(false)
	if n := counter.take(); len(n) > 0 {
		t.Errorf("a resync of unchanged apps sent requests: %v", n)
	}

	// Drift on the second cluster is reverted there.
	live, err := dyn2.Resource(gvrCM).Namespace(ns2).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(live.Object, "changed-by-hand", "data", "k")
	if _, err := dyn2.Resource(gvrCM).Namespace(ns2).Update(ctx, live, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "drift on the second cluster reverted", func() (bool, string) {
		v := cmValue(t, dyn2, ns2, "settings")
		return v == "two-v1", v
	})

	// A cluster in use cannot be deleted; the error names its apps.
	if err := rec.DeleteCluster(ctx, "second"); !errors.Is(err, storage.ErrClusterInUse) || !strings.Contains(err.Error(), "[three two]") {
		t.Errorf("delete a cluster in use: %v", err)
	}

	// The second cluster goes away: its apps are Unknown with the error;
	// the first cluster's app keeps syncing.
	if err := env2.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"two", "three"} {
		eventually(t, "app "+app+" Unknown while its cluster is away", func() (bool, string) {
			st := appStatus(t, store, app)
			return st.Sync == storage.SyncUnknown && strings.Contains(st.Error, "cluster second ("+env2.URL()+") does not answer"), fmt.Sprintf("%s %s", st.Sync, st.Error)
		})
	}
	if _, state, lastErr := rec.ClusterState("second"); state != storage.ClusterUnreachable || lastErr == "" {
		t.Errorf("state of the stopped cluster: %s %q", state, lastErr)
	}
	w.write("one/cm.yaml", cmWith("settings", "one-v2"))
	w.write("two/cm.yaml", cmWith("settings", "two-v2"))
	head := w.commit("both change while the second cluster is away")
	eventually(t, "app one synced while the second cluster is away", func() (bool, string) {
		st := appStatus(t, store, "one")
		return st.SyncedCommit == head && st.Sync == storage.Synced && cmValue(t, c1.dyn, ns1, "settings") == "one-v2", fmt.Sprintf("%s %s", st.Sync, st.Error)
	})
	if st := appStatus(t, store, "two"); st.Sync != storage.SyncUnknown {
		t.Errorf("app two while its cluster is away: %s %s", st.Sync, st.Error)
	}

	// It comes back: the watches restart, the apps sync by themselves.
	if err := env2.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "app two synced after its cluster came back", func() (bool, string) {
		st := appStatus(t, store, "two")
		return st.Sync == storage.Synced && st.SyncedCommit == head && cmValue(t, dyn2, ns2, "settings") == "two-v2", fmt.Sprintf("%s %s %s", st.Sync, st.Error, cmValue(t, dyn2, ns2, "settings"))
	})
	eventually(t, "app three synced after its cluster came back", func() (bool, string) {
		st := appStatus(t, store, "three")
		return st.Sync == storage.Synced && st.Error == "", fmt.Sprintf("%s %s", st.Sync, st.Error)
	})
	if _, state, _ := rec.ClusterState("second"); state != storage.ClusterConnected {
		t.Errorf("state of the restarted cluster: %s", state)
	}
	// The restarted cluster's watch works again: drift is reverted.
	live, err = dyn2.Resource(gvrCM).Namespace(ns2).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(live.Object, "changed-again", "data", "k")
	if _, err := dyn2.Resource(gvrCM).Namespace(ns2).Update(ctx, live, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "drift reverted after the restart", func() (bool, string) {
		v := cmValue(t, dyn2, ns2, "settings")
		return v == "two-v2", v
	})

	// Once no app uses it, it can be deleted, credentials and all.
	for _, app := range []string{"two", "three"} {
		if _, err := rec.Delete(ctx, app, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.DeleteCluster(ctx, "second"); err != nil {
		t.Fatalf("delete the unused cluster: %v", err)
	}
	if _, err := os.Stat(store.CredentialDir("cluster", "second")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("credentials after delete: %v", err)
	}

	// The token never reached a log line, an app status or an error.
	scanForSecret(t, dataDir, env2.Token(), logs.String())
}

// scanForSecret fails when secret appears in text or in any file of the
// data dir but the cluster credential files (which may hold it, 0600).
func scanForSecret(t *testing.T, dataDir, secret string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Error("the bearer token appears in the logs")
		}
	}
	credDir := filepath.Join(dataDir, "credentials", "cluster")
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(p, credDir+string(filepath.Separator)) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("the bearer token is in %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
