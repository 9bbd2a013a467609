package reconciler_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/reconciler"
)

// Without spec.syncPolicy.automated an app is rendered and compared, and
// applied only by `fjord app sync`. An object another app already manages
// is skipped, never taken over.
func TestManualPolicyAndOwnedByOtherApp(t *testing.T) {
	c, store, w, rec, ns := setup(t, map[string]string{"app/cms.yaml": twoConfigMaps, "other/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\ndata:\n  owner: other\n"})
	suffix := ns[len(ns)-6:]
	other := "other-" + suffix
	if _, err := rec.Apply(context.Background(), appDoc(other, "apps", "other", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	manual := "manual-" + suffix
	doc := string(appDoc(manual, "apps", "app", ns, true, true))
	doc = doc[:strings.Index(doc, "  syncPolicy:")]
	a, err := rec.Apply(context.Background(), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync != "OutOfSync" || c.get(gvrCM, ns, "drop") != nil {
		t.Fatalf("a manual app was applied on apply: %+v", a.Status)
	}
	w.write("app/extra.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n")
	extra := w.commit("extra")
	eventually(t, "the push compared", func() (bool, string) {
		st := appStatus(t, store, manual)
		return st.Revision == extra && st.Sync == "OutOfSync", string(st.Sync)
	})
	rec2, err := rec.Sync(context.Background(), manual, reconciler.SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "drop") == nil || c.get(gvrCM, ns, "extra") == nil {
		t.Fatalf("sync did not apply: %+v", rec2)
	}
	var skipped string
	for _, ch := range rec2.Changes {
		if ch.Action == "skipped" {
			skipped = ch.ID + " " + ch.Reason
		}
	}
	if !strings.Contains(skipped, "ConfigMap/"+ns+"/keep") || !strings.Contains(skipped, other) {
		t.Errorf("the other app's object was not skipped: %+v", rec2.Changes)
	}
	if cm := c.get(gvrCM, ns, "keep"); cm.GetLabels()[reconciler.LabelApp] != other || cm.Object["data"].(map[string]any)["owner"] != "other" {
		t.Errorf("the other app's object was changed: %v", cm.Object)
	}
	if st := appStatus(t, store, manual); st.Sync != "OutOfSync" || !strings.Contains(st.Error, "owned by app") {
		t.Errorf("a conflict with another app does not show on the status: %+v", st)
	}
}
