package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/fjordhq/fjord/internal/testenv"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// waitFor is a generous bounded wait: behaviour, never timing, is tested.
const waitFor = 60 * time.Second

var (
	gvrDeploy = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrCM     = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrSvc    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrPDB    = schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}
	gvrNS     = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// cluster is one test's view of the shared API server.
type cluster struct {
	t          testing.TB
	env        *testenv.Env
	dyn        dynamic.Interface
	kubeconfig string
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	env := testenv.Shared(t)
	cfg, _, err := reconciler.LoadRESTConfig(env.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	// The benchmark's drift writes must not wait on client-go's default
	// 5 QPS limit: that would be timed as fjord's latency.
	cfg.QPS, cfg.Burst = 1000, 1000
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, env: env, dyn: dyn, kubeconfig: env.Kubeconfig()}
}

// start runs a Reconciler on store until the test ends (or stop is
// called).
func (c *cluster) start(store *storage.Store, opts ...func(*reconciler.Config)) (rec *reconciler.Reconciler, stop func()) {
	c.t.Helper()
	cfg, _, err := reconciler.LoadRESTConfig(c.kubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	rc := reconciler.Config{Store: store, RESTConfig: cfg, ResyncInterval: time.Hour}
	for _, o := range opts {
		o(&rc)
	}
	rec, err = reconciler.New(rc)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("Run: %v", err)
		}
	}
	c.t.Cleanup(stop)
	return rec, stop
}

func (c *cluster) get(gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	c.t.Helper()
	u, err := c.dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

func (c *cluster) kubectl(args ...string) string {
	c.t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", c.kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not after %s; last seen: %s", what, waitFor, last)
}

func replicas(u *unstructured.Unstructured) int64 {
	n, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	return n
}

func image(u *unstructured.Unstructured) string {
	cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		return ""
	}
	return cs[0].(map[string]any)["image"].(string)
}

func appStatus(t testing.TB, store *storage.Store, name string) storage.AppStatus {
	t.Helper()
	a, err := store.App(name)
	if err != nil {
		t.Fatal(err)
	}
	return a.Status
}

func TestSeedEndToEnd(t *testing.T) {
	c := newCluster(t)
	dataDir := t.TempDir()
	store := openStore(t, dataDir)
	w := newWork(t, store, "gitops-infra", "seed")
	rec, stop := c.start(store)
	ctx := context.Background()
	const app, ns = "nordic-payment-gateway", "payments"

	// Apply: the seed Application, unchanged but for its repoURL.
	a, err := rec.Apply(ctx, []byte(strings.Replace(seedApp, "REPO", "gitops-infra", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != "Synced" || a.Status.SyncedCommit != git(t, w.dir, "rev-parse", "HEAD") {
		t.Fatalf("after apply: %+v", a.Status)
	}
	if c.get(gvrNS, "", ns) == nil {
		t.Fatal("CreateNamespace=true did not create the namespace")
	}
	dep := c.get(gvrDeploy, ns, "payment-gateway")
	if dep == nil || replicas(dep) != 3 || image(dep) != "registry.example.com/nordic/payment-gateway:1.4.2" {
		t.Fatalf("deployment: %v", dep)
	}
	if dep.GetLabels()[reconciler.LabelApp] != app || dep.GetAnnotations()[reconciler.AnnotationTracking] == "" {
		t.Errorf("deployment lacks the tracking marks: %v %v", dep.GetLabels(), dep.GetAnnotations())
	}
	for _, o := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{gvrCM, "gateway-config"}, {gvrSvc, "payment-gateway"}, {gvrPDB, "payment-gateway"}} {
		if c.get(o.gvr, ns, o.name) == nil {
			t.Errorf("%s %s not applied", o.gvr.Resource, o.name)
		}
	}
	if inv, ok, _ := store.AppInventory(app); !ok || len(inv.Entries) != 4 {
		t.Errorf("bbolt inventory: %v %+v", ok, inv)
	}
	if c.get(gvrCM, ns, "fjord-inventory."+app) == nil {
		t.Error("no inventory ConfigMap in the cluster")
	}

	// Objects fjord must never touch: one unmanaged, one of another app.
	c.kubectl("-n", ns, "create", "configmap", "unmanaged", "--from-literal=k=v")
	other := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "other-app-config", "namespace": ns,
			"labels":      map[string]any{reconciler.LabelApp: "other-app"},
			"annotations": map[string]any{reconciler.AnnotationTracking: "other-app:/ConfigMap:payments/other-app-config"}}}}
	if _, err := c.dyn.Resource(gvrCM).Namespace(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// CI bumps the image tag with sed and pushes: applied without polling.
	w.sed("overlays/prod/kustomization.yaml", "newTag: 1.4.2", "newTag: 1.4.3")
	bumped := w.commit("release 1.4.3")
	eventually(t, "the new image applied", func() (bool, string) {
		d := c.get(gvrDeploy, ns, "payment-gateway")
		return image(d) == "registry.example.com/nordic/payment-gateway:1.4.3", image(d)
	})
	eventually(t, "status at the new commit", func() (bool, string) {
		st := appStatus(t, store, app)
		return st.SyncedCommit == bumped, fmt.Sprintf("%+v", st)
	})

	// A resource removed from git is pruned; the others stay.
	w.sed("overlays/prod/kustomization.yaml", "- pdb.yaml\n", "")
	w.remove("overlays/prod/pdb.yaml")
	w.commit("drop the PDB")
	eventually(t, "the PDB pruned", func() (bool, string) {
		return c.get(gvrPDB, ns, "payment-gateway") == nil, "still there"
	})
	if c.get(gvrCM, ns, "unmanaged") == nil || c.get(gvrCM, ns, "other-app-config") == nil {
		t.Fatal("prune touched an object that is not this app's")
	}
	hist, _ := store.AppSyncs(app, 1)
	if len(hist) != 1 || len(hist[0].Changes) != 1 || hist[0].Changes[0].Action != "deleted" {
		t.Errorf("last sync: %+v", hist)
	}

	// kubectl scale is drift: reverted, and recorded with who did it.
	c.kubectl("-n", ns, "scale", "deployment/payment-gateway", "--replicas=5")
	eventually(t, "replicas reverted to 3", func() (bool, string) {
		d := c.get(gvrDeploy, ns, "payment-gateway")
		return replicas(d) == 3, fmt.Sprint(replicas(d))
	})
	eventually(t, "the drift recorded", func() (bool, string) {
		ds, _ := store.AppDrifts(app, 5)
		for _, d := range ds {
			if d.Action == "reverted" && strings.Contains(strings.Join(d.Fields, ","), "spec.replicas") && strings.HasPrefix(d.Manager, "kubectl") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", ds)
	})

	// kubectl delete is drift too: recreated.
	c.kubectl("-n", ns, "delete", "configmap", "gateway-config")
	eventually(t, "the ConfigMap recreated", func() (bool, string) {
		return c.get(gvrCM, ns, "gateway-config") != nil, "absent"
	})
	eventually(t, "the deletion recorded", func() (bool, string) {
		ds, _ := store.AppDrifts(app, 5)
		for _, d := range ds {
			if d.Action == "recreated" && d.Deleted {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", ds)
	})

	// Restart: no apply, no prune, inventory intact.
	before := map[string]string{}
	for _, o := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{gvrCM, "gateway-config"}, {gvrSvc, "payment-gateway"}, {gvrDeploy, "payment-gateway"}} {
		before[o.gvr.Resource] = c.get(o.gvr, ns, o.name).GetResourceVersion()
	}
	invBefore, _, _ := store.AppInventory(app)
	stop()
	_, _ = c.start(store)
	eventually(t, "the start sync recorded", func() (bool, string) {
		h, _ := store.AppSyncs(app, 1)
		return len(h) == 1 && h[0].Trigger == "start", fmt.Sprintf("%+v", h)
	})
	h, _ := store.AppSyncs(app, 1)
	if len(h[0].Changes) != 0 || h[0].Error != "" || h[0].Unchanged != 3 {
		t.Errorf("start sync after restart changed things: %+v", h[0])
	}
	for _, o := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{gvrCM, "gateway-config"}, {gvrSvc, "payment-gateway"}, {gvrDeploy, "payment-gateway"}} {
		if rv := c.get(o.gvr, ns, o.name).GetResourceVersion(); rv != before[o.gvr.Resource] {
			t.Errorf("%s written on restart: resourceVersion %s -> %s", o.gvr.Resource, before[o.gvr.Resource], rv)
		}
	}
	invAfter, _, _ := store.AppInventory(app)
	if fmt.Sprint(invAfter) != fmt.Sprint(invBefore) {
		t.Errorf("inventory changed on restart:\n%v\n%v", invBefore, invAfter)
	}
}

func TestUnsupportedFieldIsRefused(t *testing.T) {
	c := newCluster(t)
	store := openStore(t, t.TempDir())
	newWork(t, store, "gitops-infra", "seed")
	rec, _ := c.start(store)
	doc := strings.Replace(seedApp, "REPO", "gitops-infra", 1)
	doc = strings.Replace(doc, "    path: overlays/prod\n", "    path: overlays/prod\n    plugin:\n      name: x\n", 1)
	_, err := rec.Apply(context.Background(), []byte(doc))
	if !errors.Is(err, reconciler.ErrInvalidApp) || !strings.Contains(err.Error(), "spec.source.plugin") {
		t.Fatalf("Apply = %v, want ErrInvalidApp naming spec.source.plugin", err)
	}
	if apps, _ := store.Apps(); len(apps) != 0 {
		t.Errorf("a refused app was stored: %+v", apps)
	}
	// A repoURL that is no repo of this fjord is refused too, with the fix.
	_, err = rec.Apply(context.Background(), []byte(strings.Replace(seedApp, "REPO", "git@github.com:nordic-fintech/gitops-infra.git", 1)))
	if !errors.Is(err, reconciler.ErrInvalidApp) || !strings.Contains(err.Error(), "fjord mirror add") {
		t.Fatalf("Apply with a foreign repoURL = %v", err)
	}
}
