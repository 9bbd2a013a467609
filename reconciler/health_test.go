package reconciler_test

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Health is kstatus per object; the app's is the worst, and it follows
// the objects' status as the watch sees it, without a sync.
func TestHealthFollowsRollout(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{"app/deploy.yaml": deployment, "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"})
	name := "health-" + ns[len(ns)-6:]
	a, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true))
	if err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs: the Deployment never rolls out by itself.
	if a.Status.Health != "InProgress" || len(a.Status.Objects) != 2 {
		t.Fatalf("health before rollout: %s %+v", a.Status.Health, a.Status.Objects)
	}
	// Play the Deployment controller: status says every replica is there.
	d := c.get(gvrDeploy, ns, "web")
	d.Object["status"] = map[string]any{
		"observedGeneration": d.GetGeneration(),
		"replicas":           int64(2), "updatedReplicas": int64(2), "readyReplicas": int64(2), "availableReplicas": int64(2),
		"conditions": []any{map[string]any{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
			map[string]any{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}},
	}
	if _, err := c.dyn.Resource(gvrDeploy).Namespace(ns).UpdateStatus(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the app Current", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.Health == "Current", fmt.Sprintf("%s %+v", st.Health, st.Objects)
	})
}
