package reconciler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fjordhq/fjord/helmrepo"
	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
	"github.com/fjordhq/fjord/reconciler"
)

var gvrPod = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// helmApp is a two-source Application: the chart web of repo charts with
// a value file from repo values ($values).
func helmApp(name, ns string) []byte {
	return fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
spec:
  sources:
  - repoURL: charts
    path: web
    helm:
      releaseName: shop
      valueFiles:
      - values.yaml
      - $values/envs/prod.yaml
      parameters:
      - name: image.tag
        value: "1.28"
      fileParameters:
      - name: config
        path: files/config.txt
  - repoURL: values
    ref: values
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
`, name, ns)
}

func cmKey(u *unstructured.Unstructured, key string) string {
	s, _, _ := unstructured.NestedString(u.Object, "data", key)
	return s
}

// A chart in git with a vendored dependency, a pre-install hook and a
// value file from a second repo: the hook runs in PreSync before the
// chart's objects, the values merge as helm template merges them, test
// hooks never run, and a push to either repo syncs the app (a push that
// touches neither the chart nor the value files renders nothing).
func TestHelmChartFromGitWithHooksAndValuesRepo(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	charts := newWork(t, store, "charts", "helm")
	vals := newWork(t, store, "values", "")
	vals.write("envs/prod.yaml", "replicaCount: 3\ngreeting: from the values repo\ncommon:\n  flavour: mint\n")
	vals.commit("prod values")
	reg := prometheus.NewRegistry()
	rec, _ := c.start(store, func(cfg *reconciler.Config) { cfg.Registerer = reg })
	name := "helm-" + ns[len(ns)-6:]

	done := applyAsync(rec, helmApp(name, ns))
	eventually(t, "the pre-install Job created in PreSync", func() (bool, string) {
		return c.get(gvrJob, ns, "shop-migrate") != nil, "absent"
	})
	if p := progress(t, store, name); p != "PreSync/-1" {
		t.Errorf("progress = %q, want PreSync/-1 (helm.sh/hook-weight -1 is the wave)", p)
	}
	if c.get(gvrDeploy, ns, "shop-web") != nil {
		t.Fatal("the chart's Deployment exists before its pre-install hook finished")
	}
	c.finishJob(ns, "shop-migrate", true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dep := c.get(gvrDeploy, ns, "shop-web")
	if dep == nil || replicas(dep) != 3 || image(dep) != "nginx:1.28" {
		t.Fatalf("Deployment = %v (want replicas 3 from the values repo, image tag 1.28 from parameters)", dep)
	}
	settings := c.get(gvrCM, ns, "shop-settings")
	if settings == nil || cmKey(settings, "greeting") != "from the values repo" || cmKey(settings, "config") != "level=debug\n" || cmKey(settings, "kube") == "" {
		t.Fatalf("ConfigMap shop-settings = %v", settings)
	}
	if common := c.get(gvrCM, ns, "shop-common"); common == nil || cmKey(common, "flavour") != "mint" {
		t.Fatalf("the vendored dependency's ConfigMap = %v (want flavour mint from the values repo)", common)
	}
	if c.get(gvrPod, ns, "shop-test") != nil {
		t.Error("a helm test hook was created")
	}
	eventually(t, "the hook deleted (hook-succeeded)", func() (bool, string) {
		j := c.get(gvrJob, ns, "shop-migrate")
		return j == nil || j.GetDeletionTimestamp() != nil, "still there"
	})
	st := appStatus(t, store, name)
	if st.Sync != "Synced" || len(st.Sources) != 2 || st.Sources[1].Revision != git(t, vals.dir, "rev-parse", "HEAD") || st.Sources[0].Synced != git(t, charts.dir, "rev-parse", "HEAD") {
		t.Fatalf("status = %+v", st)
	}
	inv, _, _ := store.AppInventory(name)
	for _, e := range inv.Entries {
		if strings.Contains(e.ID, "Job") || strings.Contains(e.ID, "Pod") {
			t.Errorf("a hook is in the inventory: %s", e.ID)
		}
	}

	// Every sync runs the pre-upgrade hook again; finishHook plays the
	// Job controller for the next one.
	finishHook := func(what string) {
		t.Helper()
		eventually(t, "the hook of "+what, func() (bool, string) {
			j := c.get(gvrJob, ns, "shop-migrate")
			if j == nil || j.GetDeletionTimestamp() != nil {
				return false, "absent"
			}
			n, _, _ := unstructured.NestedInt64(j.Object, "status", "succeeded")
			return n == 0, "the previous one"
		})
		c.finishJob(ns, "shop-migrate", true)
	}
	synced := func(what, chartsHead, valsHead string) {
		t.Helper()
		eventually(t, what, func() (bool, string) {
			st := appStatus(t, store, name)
			return st.Sync == "Synced" && st.Progress == nil && len(st.Sources) == 2 && st.Sources[0].Synced == chartsHead && st.Sources[1].Synced == valsHead, fmt.Sprintf("%+v", st)
		})
	}

	// A push to the values repo syncs the app.
	vals.sed("envs/prod.yaml", "replicaCount: 3", "replicaCount: 4")
	valsHead := vals.commit("four replicas")
	finishHook("the values push")
	synced("the values push synced", git(t, charts.dir, "rev-parse", "HEAD"), valsHead)
	if r := replicas(c.get(gvrDeploy, ns, "shop-web")); r != 4 {
		t.Errorf("replicas = %d, want 4 from the values repo's new commit", r)
	}

	// Pushes that touch neither the chart nor a value file sync the new
	// commits from the cached render and, changing nothing, run no hook
	// (as an Argo CD auto-sync runs only for an OutOfSync app).
	before := renders(t, reg, name)
	charts.write("README.md", "charts of the shop\n")
	chartsHead := charts.commit("docs")
	synced("the docs push synced", chartsHead, valsHead)
	vals.write("envs/staging.yaml", "replicaCount: 1\n")
	valsHead = vals.commit("staging")
	synced("the staging push synced", chartsHead, valsHead)
	if n := renders(t, reg, name); n != before {
		t.Errorf("renders = %d after unrelated pushes, want %d", n, before)
	}
	if j := c.get(gvrJob, ns, "shop-migrate"); j != nil && j.GetDeletionTimestamp() == nil {
		if n, _, _ := unstructured.NestedInt64(j.Object, "status", "succeeded"); n == 0 {
			t.Error("a sync that changed nothing ran the pre-upgrade hook")
		}
	}
	// A push to the chart renders again.
	charts.sed("web/templates/configmap.yaml", "  greeting:", "  salutation:")
	chartsHead = charts.commit("salutation")
	finishHook("the chart push")
	synced("the chart push synced", chartsHead, valsHead)
	if n := renders(t, reg, name); n != before+1 {
		t.Errorf("renders = %d after a chart push, want %d", n, before+1)
	}
}

// Bad chart input fails naming the file and the fix, and the last good
// state stays in the cluster.
func TestHelmBadInputKeepsTheLastGoodState(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	charts := newWork(t, store, "charts", "helm")
	vals := newWork(t, store, "values", "")
	vals.write("envs/prod.yaml", "replicaCount: 2\n")
	vals.commit("prod values")
	rec, _ := c.start(store)
	name := "helm-bad-" + ns[len(ns)-6:]
	// No hooks here: this test is about the render.
	charts.remove("web/templates/migrate.yaml")
	charts.commit("no migration")

	if _, err := rec.Apply(context.Background(), helmApp(name, ns)); err != nil {
		t.Fatal(err)
	}
	if r := replicas(c.get(gvrDeploy, ns, "shop-web")); r != 2 {
		t.Fatalf("replicas = %d, want 2", r)
	}

	charts.write("web/templates/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }-broken\n")
	charts.commit("broken template")
	eventually(t, "the broken template reported", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Sync == "Error" && strings.Contains(st.Error, "web/templates/broken.yaml") && strings.Contains(st.Error, "fix the template"), st.Error
	})
	if r := replicas(c.get(gvrDeploy, ns, "shop-web")); r != 2 {
		t.Errorf("after a broken template, replicas = %d, want 2 (the last good state)", r)
	}
	charts.remove("web/templates/broken.yaml")
	charts.commit("fixed")
	eventually(t, "synced again", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Sync == "Synced", st.Error
	})

	vals.remove("envs/prod.yaml")
	vals.commit("values gone")
	eventually(t, "the missing value file reported", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Sync == "Error" && strings.Contains(st.Error, "envs/prod.yaml does not exist in repo values") && strings.Contains(st.Error, "ignoreMissingValueFiles"), st.Error
	})
	if c.get(gvrDeploy, ns, "shop-web") == nil || c.get(gvrCM, ns, "shop-settings") == nil {
		t.Error("after a missing value file, the app's objects are gone")
	}
}

// source.kustomize edits the kustomization before it is built, as Argo
// CD's kustomize edit does.
func TestKustomizeOptions(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{
		"app/kustomization.yaml":                  "resources: [deploy.yaml, cm.yaml]\ncommonLabels:\n  team: a\ncommonAnnotations:\n  owner: team-a\n",
		"app/deploy.yaml":                         deployment,
		"app/cm.yaml":                             cm("settings"),
		"app/components/extra/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [extra.yaml]\n",
		"app/components/extra/extra.yaml":         cm("extra"),
	})
	ns2 := c.env.Namespace(t)
	name := "kust-" + ns[len(ns)-6:]
	doc := fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: %s
spec:
  source:
    repoURL: apps
    path: app
    kustomize:
      images: [nginx=registry.example.com/nginx:1.28]
      namePrefix: pre-
      nameSuffix: -suf
      commonLabels: {env: prod}
      commonAnnotations: {owner: platform}
      forceCommonAnnotations: true
      namespace: %s
      replicas:
      - name: web
        count: "5"
      patches:
      - target: {kind: ConfigMap, name: settings}
        patch: |-
          [{"op": "add", "path": "/data/patched", "value": "yes"}]
      components: [components/extra]
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated: {prune: true, selfHeal: true}
`, name, ns2, ns)
	if _, err := rec.Apply(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
	if st := appStatus(t, store, name); st.Sync != "Synced" {
		t.Fatalf("status = %+v", st)
	}
	dep := c.get(gvrDeploy, ns2, "pre-web-suf")
	if dep == nil || image(dep) != "registry.example.com/nginx:1.28" || replicas(dep) != 5 {
		t.Fatalf("Deployment pre-web-suf in %s = %v", ns2, dep)
	}
	if l := dep.GetLabels(); l["team"] != "a" || l["env"] != "prod" || dep.GetAnnotations()["owner"] != "platform" {
		t.Errorf("labels %v, annotations %v", l, dep.GetAnnotations())
	}
	if s := c.get(gvrCM, ns2, "pre-settings-suf"); s == nil || cmKey(s, "patched") != "yes" {
		t.Errorf("patched ConfigMap = %v", s)
	}
	if c.get(gvrCM, ns2, "pre-extra-suf") == nil {
		t.Error("the component's ConfigMap is missing")
	}

	// A label the kustomization sets otherwise needs forceCommonLabels;
	// without it the sync fails and the objects stay as they are.
	bad := strings.Replace(string(doc), "commonLabels: {env: prod}", "commonLabels: {team: b}", 1)
	if _, err := rec.Apply(context.Background(), []byte(bad)); err != nil {
		t.Fatal(err)
	}
	st := appStatus(t, store, name)
	if st.Sync != "Error" || !strings.Contains(st.Error, "app/kustomization.yaml already sets team to a") || !strings.Contains(st.Error, "forceCommonLabels: true") {
		t.Fatalf("status = %+v", st)
	}
	if dep := c.get(gvrDeploy, ns2, "pre-web-suf"); dep == nil || dep.GetLabels()["team"] != "a" || dep.GetLabels()["env"] != "prod" {
		t.Errorf("after the refused label, the Deployment = %v", dep)
	}
}

// Charts from a Helm repository (a real one, served by net/http) through
// helmrepo's Manager as Config.Charts: source.chart with a semver range,
// and a chart in git whose dependency is not vendored. Both keep syncing
// from the local copies while the repository is down.
func TestChartsFromAHelmRepository(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	srv.Publish(helmrepotest.Chart("hello", "1.0.0"))
	srv.Publish(helmrepotest.Chart("hello", "1.1.0"))
	srv.Publish(helmrepotest.Chart("hello", "2.0.0"))
	srv.Publish(helmrepotest.Chart("lib", "0.3.0"))
	charts := newWork(t, store, "charts", "helm")
	charts.remove("web/templates/migrate.yaml")
	charts.sed("web/Chart.yaml", "dependencies:\n", "dependencies:\n- name: lib\n  version: 0.3.x\n  repository: "+srv.URL()+"\n")
	charts.commit("lib from the Helm repository")
	mgr, err := helmrepo.New(helmrepo.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := c.start(store, func(cfg *reconciler.Config) { cfg.Charts = mgr })
	ctx := context.Background()
	suffix := ns[len(ns)-6:]

	fromRepo := fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: hello-%s
spec:
  source:
    repoURL: %s
    chart: hello
    targetRevision: ^1.0.0
    helm:
      releaseName: hi
      valuesObject:
        greeting: from valuesObject
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated: {prune: true}
`, suffix, srv.URL(), ns)
	if _, err := rec.Apply(ctx, fromRepo); err != nil {
		t.Fatal(err)
	}
	cm := c.get(gvrCM, ns, "hi-hello")
	if cm == nil || cmKey(cm, "version") != "1.1.0" || cmKey(cm, "greeting") != "from valuesObject" {
		t.Fatalf("ConfigMap hi-hello = %v (want version 1.1.0, the newest in ^1.0.0)", cm)
	}
	if st := appStatus(t, store, "hello-"+suffix); st.Sync != "Synced" || len(st.Sources) != 1 || st.Sources[0].Revision != "1.1.0" || st.Sources[0].Synced != "1.1.0" {
		t.Fatalf("status = %+v", st)
	}

	inGit := fmt.Appendf(nil, `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web-%s
spec:
  source:
    repoURL: charts
    path: web
    helm:
      releaseName: shop
  destination:
    server: https://kubernetes.default.svc
    namespace: %s
  syncPolicy:
    automated: {prune: true}
`, suffix, ns)
	if _, err := rec.Apply(ctx, inGit); err != nil {
		t.Fatal(err)
	}
	if st := appStatus(t, store, "web-"+suffix); st.Sync != "Synced" {
		t.Fatalf("status = %+v", st)
	}
	if lib := c.get(gvrCM, ns, "shop-lib"); lib == nil || cmKey(lib, "version") != "0.3.0" {
		t.Fatalf("the remote dependency's ConfigMap = %v", lib)
	}
	if c.get(gvrCM, ns, "shop-common") == nil {
		t.Fatal("the vendored dependency is missing beside the remote one")
	}

	// The repository goes down: both apps still render, from the local
	// copies, on a push and on a sync.
	srv.Close()
	charts.sed("web/values.yaml", "greeting: hello", "greeting: offline")
	charts.commit("while the Helm repository is down")
	eventually(t, "the chart in git synced with the repository down", func() (bool, string) {
		s := c.get(gvrCM, ns, "shop-settings")
		st := appStatus(t, store, "web-"+suffix)
		return s != nil && cmKey(s, "greeting") == "offline" && st.Sync == "Synced", st.Error
	})
	if _, err := rec.Sync(ctx, "hello-"+suffix, reconciler.SyncOptions{}); err != nil {
		t.Fatalf("sync of the repository chart while the repository is down: %v", err)
	}
}

// Without Config.Charts, a chart source fails with an error that says so.
func TestChartWithoutChartSource(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	rec, _ := c.start(store)
	doc := fmt.Appendf(nil, "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: nochart-%s\nspec:\n  source:\n    repoURL: https://charts.example.com\n    chart: hello\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: %s\n  syncPolicy:\n    automated: {}\n", ns[len(ns)-6:], ns)
	if _, err := rec.Apply(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
	if st := appStatus(t, store, "nochart-"+ns[len(ns)-6:]); st.Sync != "Error" || !strings.Contains(st.Error, "not configured with Helm repository support") {
		t.Fatalf("status = %+v", st)
	}
}

// A chart of an OCI registry (distribution's, in process), named as Argo
// CD users often do: a repoURL without a scheme.
func TestChartFromAnOCIRegistry(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	store := openStore(t, t.TempDir())
	reg := helmrepotest.NewRegistry(t, helmrepotest.Options{})
	reg.Push(helmrepotest.Chart("hello", "0.9.0"))
	reg.Push(helmrepotest.Chart("hello", "1.2.0"))
	mgr, err := helmrepo.New(helmrepo.Config{Store: store, TLSConfig: reg.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := c.start(store, func(cfg *reconciler.Config) { cfg.Charts = mgr })
	name := "oci-" + ns[len(ns)-6:]
	doc := fmt.Appendf(nil, "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: %s\nspec:\n  source:\n    repoURL: %s/charts\n    chart: hello\n    targetRevision: 1.2.0\n    helm:\n      parameters:\n      - name: greeting\n        value: from OCI, with a comma\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: %s\n  syncPolicy:\n    automated: {}\n", name, reg.Host(), ns)
	if _, err := rec.Apply(context.Background(), doc); err != nil {
		t.Fatal(err)
	}
	st := appStatus(t, store, name)
	cm := c.get(gvrCM, ns, name+"-hello")
	if st.Sync != "Synced" || cm == nil || cmKey(cm, "version") != "1.2.0" || cmKey(cm, "greeting") != "from OCI, with a comma" {
		t.Fatalf("status %+v, ConfigMap %v", st, cm)
	}
}
