package reconciler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fjordhq/fjord/reconciler"
)

var gvrEvent = schema.GroupVersionResource{Version: "v1", Resource: "events"}

// fjordEvents lists the Events of reason in ns.
func (c *cluster) fjordEvents(ns, reason string) []unstructured.Unstructured {
	c.t.Helper()
	l, err := c.dyn.Resource(gvrEvent).Namespace(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=" + reason})
	if err != nil {
		c.t.Fatal(err)
	}
	return l.Items
}

// TestKubernetesEvents: a reverted drift posts FjordDriftReverted on the
// object (with its UID, so kubectl describe shows it); a failed sync posts
// FjordSyncFailed on the app's inventory ConfigMap once, not again for a
// sync failing the same way.
func TestKubernetesEvents(t *testing.T) {
	c, _, w, rec, ns := setup(t, map[string]string{"app/deploy.yaml": deployment})
	name := "events-" + ns[len(ns)-6:]
	ctx := context.Background()
	if _, err := rec.Apply(ctx, appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	c.kubectl("-n", ns, "scale", "deployment/web", "--replicas=4")
	var drift []unstructured.Unstructured
	eventually(t, "a FjordDriftReverted Event", func() (bool, string) {
		drift = c.fjordEvents(ns, reconciler.ReasonDriftReverted)
		return len(drift) == 1, fmt.Sprint(len(drift))
	})
	dep := c.get(gvrDeploy, ns, "web")
	ev := drift[0].Object
	involved := ev["involvedObject"].(map[string]any)
	if involved["kind"] != "Deployment" || involved["name"] != "web" || involved["uid"] != string(dep.GetUID()) || ev["type"] != "Normal" ||
		!strings.Contains(ev["message"].(string), "spec.replicas") || !strings.Contains(ev["message"].(string), "kubectl") {
		t.Errorf("drift Event: %v", ev)
	}
	if out := c.kubectl("-n", ns, "describe", "deployment/web"); !strings.Contains(out, reconciler.ReasonDriftReverted) {
		t.Errorf("kubectl describe does not show the Event:\n%s", out)
	}

	w.write("app/deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec: [broken]\n")
	bad := w.commit("broken")
	var failed []unstructured.Unstructured
	eventually(t, "a FjordSyncFailed Event", func() (bool, string) {
		failed = c.fjordEvents(ns, reconciler.ReasonSyncFailed)
		return len(failed) == 1, fmt.Sprint(len(failed))
	})
	ev = failed[0].Object
	involved = ev["involvedObject"].(map[string]any)
	if involved["kind"] != "ConfigMap" || involved["name"] != "fjord-inventory."+name || ev["type"] != "Warning" || !strings.Contains(ev["message"].(string), bad[:12]) {
		t.Errorf("sync failure Event: %v", ev)
	}
	// The same failure again: no second Event.
	if _, err := rec.Sync(ctx, name, reconciler.SyncOptions{}); err == nil {
		t.Fatal("sync of a broken render succeeded")
	}
	if n := len(c.fjordEvents(ns, reconciler.ReasonSyncFailed)); n != 1 {
		t.Errorf("%d FjordSyncFailed Events after the same failure twice, want 1", n)
	}

	// A render the API server refuses: the Event is on the refused
	// object too, so `kubectl describe` of it says why.
	w.write("app/deploy.yaml", strings.Replace(deployment, "replicas: 2", "replicas: -1", 1))
	refused := w.commit("negative replicas")
	eventually(t, "a FjordSyncFailed Event on the Deployment", func() (bool, string) {
		for _, e := range c.fjordEvents(ns, reconciler.ReasonSyncFailed) {
			in := e.Object["involvedObject"].(map[string]any)
			if in["kind"] == "Deployment" && in["name"] == "web" && in["uid"] == string(dep.GetUID()) && strings.Contains(e.Object["message"].(string), refused[:12]) {
				return true, ""
			}
		}
		return false, fmt.Sprint(len(c.fjordEvents(ns, reconciler.ReasonSyncFailed)))
	})
}
