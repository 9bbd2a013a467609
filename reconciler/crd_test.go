package reconciler_test

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// A render holding a CRD, a namespace and custom resources in that
// namespace applies in one sync: namespaces and CRDs first, the CRD
// Established, discovery refreshed, then the rest.
func TestCRDAndNamespaceFirst(t *testing.T) {
	c := newCluster(t)
	ns := c.env.Namespace(t)
	suffix := ns[len(ns)-6:]
	group := "fjord" + suffix + ".example.com"
	target := "widgets-" + suffix
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
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
`, group)
	// The custom resource sorts before the CRD and the namespace, so
	// only staging makes this work.
	files := map[string]string{
		"app/a-widget.yaml": fmt.Sprintf("apiVersion: %s/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: %s\nspec:\n  size: 3\n", group, target),
		"app/b-crd.yaml":    crd,
		"app/c-ns.yaml":     fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", target),
	}
	_, store, _, rec, _ := setup(t, files)
	name := "crd-" + suffix
	a, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != "Synced" {
		t.Fatalf("status: %+v", a.Status)
	}
	w := c.get(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}, target, "w1")
	if w == nil {
		t.Fatal("the custom resource was not applied")
	}
	h, _ := store.AppSyncs(name, 1)
	if len(h) != 1 || len(h[0].Changes) != 3 {
		t.Errorf("history: %+v", h)
	}
}
