package reconciler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fjordhq/fjord/reconciler"
)

// With only a Role in the destination namespace (deploy/kubernetes's
// namespaced RBAC), fjord applies, keeps its inventory there, watches that
// namespace alone and still self-heals.
func TestNamespacedRBAC(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	user := "fjord-limited-" + ns[len(ns)-6:]
	ctx := context.Background()
	rbac := func(gvr schema.GroupVersionResource, obj map[string]any) {
		t.Helper()
		if _, err := c.dyn.Resource(gvr).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rbac(schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": map[string]any{"name": "fjord"},
		"rules": []any{map[string]any{"apiGroups": []any{"*"}, "resources": []any{"*"}, "verbs": []any{"*"}}},
	})
	rbac(schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}, map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": map[string]any{"name": "fjord"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fjord"},
		"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}},
	})

	store := openStore(t, t.TempDir())
	w := newWork(t, store, "apps", "")
	w.write("app/deploy.yaml", deployment)
	w.write("app/cms.yaml", twoConfigMaps)
	w.commit("initial")
	cfg, _, err := reconciler.LoadRESTConfig(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate.UserName = user
	rec, err := reconciler.New(reconciler.Config{Store: store, RESTConfig: cfg, ResyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	name := "rbac-" + ns[len(ns)-6:]
	doc := appDoc(name, "apps", "app", ns, true, true)
	a, err := rec.Apply(ctx, append(doc, []byte("    syncOptions:\n    - CreateNamespace=true\n")...))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != "Synced" {
		t.Fatalf("namespaced RBAC: %+v", a.Status)
	}
	if c.get(gvrCM, ns, "fjord-inventory."+name) == nil {
		t.Error("no inventory ConfigMap in the destination namespace")
	}
	c.kubectl("-n", ns, "scale", "deployment/web", "--replicas=7")
	eventually(t, "replicas reverted", func() (bool, string) {
		r := replicas(c.get(gvrDeploy, ns, "web"))
		return r == 2, fmt.Sprint(r)
	})
}
