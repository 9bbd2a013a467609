package reconciler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/reconciler"
)

func TestResyncLeavesDriftWithSelfHealOff(t *testing.T) {
	c := newCluster(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "apps", "")
	w.write("app/deploy.yaml", deployment)
	w.commit("initial")
	rec, _ := c.start(store, func(cfg *reconciler.Config) { cfg.ResyncInterval = 200 * time.Millisecond })
	ns := c.env.Namespace(t)
	name := "resync-off-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, false)); err != nil {
		t.Fatal(err)
	}
	c.kubectl("-n", ns, "scale", "deployment/web", "--replicas=4")
	eventually(t, "the drift reported", func() (bool, string) {
		st := appStatus(t, store, name)
		return st.LastDrift != nil, fmt.Sprintf("%+v", st)
	})
	after := time.Now()
	eventually(t, "resyncs after the drift", func() (bool, string) {
		h, _ := store.AppSyncs(name, 3)
		n := 0
		for _, s := range h {
			if s.Trigger == "resync" && s.Start.After(after) {
				n++
			}
		}
		return n >= 2, fmt.Sprintf("%+v", h)
	})
	if r := replicas(c.get(gvrDeploy, ns, "web")); r != 4 {
		t.Errorf("a resync with selfHeal off reverted the drift: replicas %d", r)
	}
	if st := appStatus(t, store, name); st.Sync != "OutOfSync" {
		t.Errorf("drift stands, yet the app is %s", st.Sync)
	}
}

func TestDriftWhileStoppedIsRecordedAtStart(t *testing.T) {
	c := newCluster(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "apps", "")
	w.write("app/deploy.yaml", deployment)
	w.commit("initial")
	rec, stop := c.start(store)
	ns := c.env.Namespace(t)
	name := "stopped-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	stop()
	c.kubectl("-n", ns, "scale", "deployment/web", "--replicas=4")
	_, _ = c.start(store)
	eventually(t, "reverted at start", func() (bool, string) {
		r := replicas(c.get(gvrDeploy, ns, "web"))
		return r == 2, fmt.Sprint(r)
	})
	eventually(t, "the drift recorded", func() (bool, string) {
		ds, _ := store.AppDrifts(name, 5)
		for _, d := range ds {
			if d.Action == "reverted" && strings.Join(d.Fields, ",") == "spec.replicas" && strings.HasPrefix(d.Manager, "kubectl") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", ds)
	})
}
