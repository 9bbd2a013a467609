package reconciler_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// A custom resource whose CRD is not installed fails its sync with an
// error that names the API group and says its CRD (and controller) is not
// installed; once someone installs the CRD outside the app, the app's
// retry syncs it with no push.
func TestMissingCRDSaysInstallItAndSyncsOnceInstalled(t *testing.T) {
	// SkipDryRunOnMissingResource=true on the object, or for the whole
	// app in spec.syncPolicy.syncOptions.
	t.Run("object", func(t *testing.T) { testMissingCRD(t, false) })
	t.Run("app", func(t *testing.T) { testMissingCRD(t, true) })
}

func testMissingCRD(t *testing.T, appLevel bool) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	suffix := ns[len(ns)-6:]
	group := "missing" + suffix + ".example.com"
	widget := fmt.Sprintf(`apiVersion: %s/v1
kind: Widget
metadata:
  name: w1
  annotations:
    argocd.argoproj.io/sync-options: SkipDryRunOnMissingResource=true
spec:
  size: 3
`, group)
	syncOptions := ""
	if appLevel {
		widget = strings.Replace(widget, "  annotations:\n    argocd.argoproj.io/sync-options: SkipDryRunOnMissingResource=true\n", "", 1)
		syncOptions = "    syncOptions:\n    - SkipDryRunOnMissingResource=true\n"
	}
	_, store, w, rec, _ := setup(t, map[string]string{"app/widget.yaml": widget, "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  k: v\n"})
	name := "missing-crd-" + suffix
	doc := string(appDoc(name, "apps", "app", ns, true, true)) +
		"    retry:\n      limit: -1\n      backoff:\n        duration: 1s\n        factor: 2\n        maxDuration: 2s\n" + syncOptions
	a, err := rec.Apply(context.Background(), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != "Error" {
		t.Fatalf("a Widget with no CRD synced: %+v", a.Status)
	}
	for _, want := range []string{"Widget (" + group + "/v1)", "the CRD of API group " + group + " is not installed", "install the controller that owns API group " + group} {
		if !strings.Contains(a.Status.Error, want) {
			t.Errorf("the error does not say %q:\n%s", want, a.Status.Error)
		}
	}

	crd := fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.%[1]s
spec:
  group: %[1]s
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`, group)
	f := filepath.Join(t.TempDir(), "crd.yaml")
	if err := os.WriteFile(f, []byte(crd), 0o644); err != nil {
		t.Fatal(err)
	}
	c.kubectl("apply", "-f", f)
	head := git(t, w.dir, "rev-parse", "HEAD")
	eventually(t, "the app synced by its retry once the CRD is installed", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Sync == "Synced" && st.SyncedCommit == head, fmt.Sprintf("%+v", st)
	})
	if c.get(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}, ns, "w1") == nil {
		t.Fatal("the Widget was not applied")
	}
}

// A kind of a built-in API group that the cluster does not serve is a
// typo or an API removed in this Kubernetes version, not a missing CRD:
// the error says to check apiVersion and kind, and nothing is applied.
func TestUnservedBuiltinKindSaysCheckAPIVersion(t *testing.T) {
	_, store, _, rec, ns := setup(t, map[string]string{
		"app/psp.yaml": "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata:\n  name: restricted\nspec: {}\n",
		"app/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  k: v\n",
	})
	name := "builtin-" + ns[len(ns)-6:]
	a, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != "Error" || !strings.Contains(a.Status.Error, "PodSecurityPolicy (policy/v1beta1)") ||
		!strings.Contains(a.Status.Error, "check apiVersion and kind") || strings.Contains(a.Status.Error, "CRD") {
		t.Fatalf("status: %+v", a.Status)
	}
	if inv, ok, _ := store.AppInventory(name); ok && len(inv.Entries) > 0 {
		t.Errorf("something was applied: %+v", inv)
	}
}

// A kind the cluster serves in another version names the versions it
// serves: the fix is the apiVersion, not an install.
func TestKindOfAnotherVersionNamesTheServedOnes(t *testing.T) {
	_, _, _, rec, ns := setup(t, map[string]string{
		"app/deploy.yaml": "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata:\n  name: web\nspec: {}\n",
	})
	a, err := rec.Apply(context.Background(), appDoc("version-"+ns[len(ns)-6:], "apps", "app", ns, true, true))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != "Error" || !strings.Contains(a.Status.Error, "serves Deployment as apps/v1, not as apps/v1beta1: change apiVersion") {
		t.Fatalf("status: %+v", a.Status)
	}
}
