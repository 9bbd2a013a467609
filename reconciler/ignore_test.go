package reconciler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fjordhq/fjord/reconciler"
)

// autoscale sets spec.replicas as an autoscaler would: another field
// manager, by update.
func (c *cluster) autoscale(ns string, n int) {
	c.t.Helper()
	_, err := c.dyn.Resource(gvrDeploy).Namespace(ns).Patch(context.Background(), "web", types.MergePatchType,
		fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n), metav1.PatchOptions{FieldManager: "autoscaler"})
	if err != nil {
		c.t.Fatal(err)
	}
}

// fjordOwnsReplicas reports whether fjord's managed fields hold
// spec.replicas.
func fjordOwnsReplicas(t *testing.T, c *cluster, ns string) bool {
	for _, f := range c.get(gvrDeploy, ns, "web").GetManagedFields() {
		if f.Manager == "fjord" && f.FieldsV1 != nil && strings.Contains(string(f.FieldsV1.Raw), `"f:replicas"`) {
			return true
		}
	}
	return false
}

func TestIgnoreDifferencesLeavesAnAutoscalerAlone(t *testing.T) {
	cases := []struct {
		name, ignore string
		respect      bool
		left         bool // the autoscaler's value stays
	}{
		{"not named: reverted", "", false, false},
		{"jsonPointers", "    jsonPointers:\n    - /spec/replicas\n", false, true},
		{"jqPathExpressions", "    jqPathExpressions:\n    - .spec.replicas\n", false, true},
		{"managedFieldsManagers", "    managedFieldsManagers:\n    - autoscaler\n", false, true},
		{"RespectIgnoreDifferences", "    jsonPointers:\n    - /spec/replicas\n", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, store, w, rec, ns := setup(t, map[string]string{"app/deploy.yaml": deployment})
			name := "ignore-" + ns[len(ns)-6:]
			doc := appDoc(name, "apps", "app", ns, true, true)
			if tc.respect {
				doc = append(doc, "    syncOptions:\n    - RespectIgnoreDifferences=true\n"...)
			}
			if tc.ignore != "" {
				doc = append(doc, "  ignoreDifferences:\n  - group: apps\n    kind: Deployment\n"+tc.ignore...)
			}
			if _, err := rec.Apply(context.Background(), doc); err != nil {
				t.Fatal(err)
			}
			if st := appStatus(t, store, name); st.Sync != "Synced" {
				t.Fatalf("first sync: %+v", st)
			}
			c.autoscale(ns, 5)
			if !tc.left {
				eventually(t, "replicas reverted", func() (bool, string) {
					r := replicas(c.get(gvrDeploy, ns, "web"))
					return r == 2, fmt.Sprint(r)
				})
				return
			}
			// Given time to act (the revert of an unnamed field takes
			// milliseconds), and a full sync: left alone.
			time.Sleep(time.Second)
			if _, err := rec.Sync(context.Background(), name, reconciler.SyncOptions{}); err != nil {
				t.Fatal(err)
			}
			if r := replicas(c.get(gvrDeploy, ns, "web")); r != 5 {
				t.Fatalf("the autoscaler's replicas reverted to %d", r)
			}
			if st := appStatus(t, store, name); st.Sync != "Synced" {
				t.Errorf("an ignored difference made the app %s: %+v", st.Sync, st)
			}
			if !tc.respect {
				return
			}
			// A release changes the Deployment: with
			// RespectIgnoreDifferences, spec.replicas is not sent.
			w.sed("app/deploy.yaml", "image: nginx:1.27", "image: nginx:1.28")
			commit := w.commit("release")
			eventually(t, "the release applied", func() (bool, string) {
				st := appStatus(t, store, name)
				return st.SyncedCommit == commit, fmt.Sprintf("%+v", st)
			})
			d := c.get(gvrDeploy, ns, "web")
			if image(d) != "nginx:1.28" || replicas(d) != 5 {
				t.Errorf("after the release: image %s, replicas %d", image(d), replicas(d))
			}
			if fjordOwnsReplicas(t, c, ns) {
				t.Error("RespectIgnoreDifferences: spec.replicas is in fjord's managed fields")
			}
		})
	}
}
