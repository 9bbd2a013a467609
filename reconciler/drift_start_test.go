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

// TestRunAgain runs one Reconciler for two terms, as a replica that
// stepped down from primary and was elected again does: the second Run
// syncs, heals drift and follows pushes with fresh queues and watches.
func TestRunAgain(t *testing.T) {
	c := newCluster(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "apps", "")
	w.write("app/deploy.yaml", deployment)
	w.commit("initial")
	cfg, _, err := reconciler.LoadRESTConfig(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := reconciler.New(reconciler.Config{Store: store, RESTConfig: cfg, ResyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rec.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	ns := c.env.Namespace(t)
	name := "again-" + ns[len(ns)-6:]
	stop := run()
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "synced in the first term", func() (bool, string) {
		d := c.get(gvrDeploy, ns, "web")
		return d != nil && replicas(d) == 2, fmt.Sprint(d != nil)
	})
	stop()

	c.kubectl("-n", ns, "scale", "deployment/web", "--replicas=4")
	stop = run()
	defer stop()
	eventually(t, "reverted when the second term starts", func() (bool, string) {
		r := replicas(c.get(gvrDeploy, ns, "web"))
		return r == 2, fmt.Sprint(r)
	})
	// Self-heal needs the second term's watches and drift queue.
	c.kubectl("-n", ns, "scale", "deployment/web", "--replicas=5")
	eventually(t, "drift in the second term reverted", func() (bool, string) {
		r := replicas(c.get(gvrDeploy, ns, "web"))
		return r == 2, fmt.Sprint(r)
	})
	// A push reaches the second term's sync queue.
	w.sed("app/deploy.yaml", "nginx:1.27", "nginx:1.28")
	w.commit("bump")
	eventually(t, "the push applied in the second term", func() (bool, string) {
		img := image(c.get(gvrDeploy, ns, "web"))
		return img == "nginx:1.28", img
	})
}
