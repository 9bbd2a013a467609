package reconciler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

var gvrJob = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}

// cm is a ConfigMap document with the given annotations.
func cm(name string, ann ...string) string {
	doc := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n"
	if len(ann) > 0 {
		doc += "  annotations:\n"
		for i := 0; i+1 < len(ann); i += 2 {
			doc += fmt.Sprintf("    %s: %q\n", ann[i], ann[i+1])
		}
	}
	return doc + "data:\n  k: v\n"
}

// hookJob is a Job hook of the given phase and delete policy ("" for the
// default).
func hookJob(name, phase, policy string) string {
	doc := "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: " + name + "\n  annotations:\n    argocd.argoproj.io/hook: " + phase + "\n"
	if policy != "" {
		doc += "    argocd.argoproj.io/hook-delete-policy: " + policy + "\n"
	}
	return doc + `spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: busybox:1.36
`
}

// waveDeployment is the Deployment "web" in a sync wave.
func waveDeployment(wave int) string {
	return strings.Replace(deployment, "  name: web\n", fmt.Sprintf("  name: web\n  annotations:\n    argocd.argoproj.io/sync-wave: \"%d\"\n", wave), 1)
}

// finishJob sets a Job's status as the Job controller would (the test
// cluster runs none): Complete, or Failed.
func (c *cluster) finishJob(ns, name string, ok bool) {
	c.t.Helper()
	res := c.dyn.Resource(gvrJob).Namespace(ns)
	u, err := res.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	cond := func(typ, reason string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "reason": reason, "message": reason, "lastTransitionTime": now, "lastProbeTime": now}
	}
	st := map[string]any{"startTime": now}
	if ok {
		st["completionTime"] = now
		st["succeeded"] = int64(1)
		st["conditions"] = []any{cond("SuccessCriteriaMet", "CompletionsReached"), cond("Complete", "CompletionsReached")}
	} else {
		st["failed"] = int64(1)
		st["conditions"] = []any{cond("FailureTarget", "BackoffLimitExceeded"), cond("Failed", "BackoffLimitExceeded")}
	}
	u.Object["status"] = st
	if _, err := res.UpdateStatus(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// makeAvailable sets a Deployment's status as its controller would once
// the rollout is done, so kstatus says Current.
func (c *cluster) makeAvailable(ns, name string) {
	c.t.Helper()
	res := c.dyn.Resource(gvrDeploy).Namespace(ns)
	u, err := res.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	n := replicas(u)
	now := time.Now().UTC().Format(time.RFC3339)
	u.Object["status"] = map[string]any{
		"observedGeneration": u.GetGeneration(),
		"replicas":           n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n,
		"conditions": []any{
			map[string]any{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "lastTransitionTime": now, "lastUpdateTime": now},
			map[string]any{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "lastTransitionTime": now, "lastUpdateTime": now},
		},
	}
	if _, err := res.UpdateStatus(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// applyAsync applies an app in the background (Apply returns when the
// sync is done) and returns a channel with Apply's error.
func applyAsync(rec *reconciler.Reconciler, doc []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := rec.Apply(context.Background(), doc)
		done <- err
	}()
	return done
}

func progress(t *testing.T, store *storage.Store, name string) string {
	st := appStatus(t, store, name)
	if st.Progress == nil {
		return ""
	}
	return fmt.Sprintf("%s/%d", st.Progress.Phase, st.Progress.Wave)
}

func TestWavesApplyInOrderEachHealthyFirst(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{
		"app/first.yaml":  cm("first", "argocd.argoproj.io/sync-wave", "-1"),
		"app/deploy.yaml": waveDeployment(1),
		"app/last.yaml":   cm("last", "argocd.argoproj.io/sync-wave", "2"),
	})
	name := "waves-" + ns[len(ns)-6:]
	done := applyAsync(rec, appDoc(name, "apps", "app", ns, true, true))

	eventually(t, "the wave 1 Deployment created", func() (bool, string) {
		return c.get(gvrDeploy, ns, "web") != nil, "absent"
	})
	if c.get(gvrCM, ns, "first") == nil {
		t.Fatal("the wave 1 Deployment exists, the wave -1 ConfigMap does not")
	}
	// No controller rolls the Deployment out: wave 1 is not healthy, so
	// wave 2 waits, and app get says where the sync is.
	eventually(t, "the sync shown waiting in Sync wave 1", func() (bool, string) {
		p := progress(t, store, name)
		return p == "Sync/1", p
	})
	time.Sleep(300 * time.Millisecond)
	if c.get(gvrCM, ns, "last") != nil {
		t.Fatal("wave 2 applied while wave 1 was not healthy")
	}
	c.makeAvailable(ns, "web")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "last") == nil {
		t.Fatal("wave 2 not applied once wave 1 was healthy")
	}
	st := appStatus(t, store, name)
	if st.Sync != "Synced" || st.Progress != nil {
		t.Errorf("status after the sync: %+v", st)
	}
}

func TestWaveTimeoutNamesTheObject(t *testing.T) {
	c := newCluster(t)
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "apps", "")
	w.write("app/deploy.yaml", waveDeployment(0))
	w.write("app/last.yaml", cm("last", "argocd.argoproj.io/sync-wave", "1"))
	w.commit("initial")
	rec, _ := c.start(store, func(cfg *reconciler.Config) { cfg.WaveTimeout = time.Second })
	ns := c.env.Namespace(t)
	name := "wave-timeout-" + ns[len(ns)-6:]
	if _, err := rec.Apply(context.Background(), appDoc(name, "apps", "app", ns, true, true)); err != nil {
		t.Fatal(err)
	}
	st := appStatus(t, store, name)
	if st.Sync != "Error" || !strings.Contains(st.Error, "Deployment.apps/"+ns+"/web") || !strings.Contains(st.Error, "wave 0") {
		t.Errorf("status: %+v", st)
	}
	if c.get(gvrCM, ns, "last") != nil {
		t.Error("the wave after the one that timed out was applied")
	}
}

func TestPreSyncHookGatesTheSyncPhase(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{
		"app/migrate.yaml": hookJob("migrate", "PreSync", "HookSucceeded"),
		"app/cm.yaml":      cm("app"),
	})
	name := "presync-" + ns[len(ns)-6:]
	done := applyAsync(rec, appDoc(name, "apps", "app", ns, true, true))
	eventually(t, "the PreSync Job created", func() (bool, string) {
		return c.get(gvrJob, ns, "migrate") != nil, "absent"
	})
	eventually(t, "the sync shown in PreSync", func() (bool, string) {
		p := progress(t, store, name)
		return p == "PreSync/0", p
	})
	time.Sleep(300 * time.Millisecond)
	if c.get(gvrCM, ns, "app") != nil {
		t.Fatal("a Sync-phase object exists before the PreSync Job completed")
	}
	c.finishJob(ns, "migrate", true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.get(gvrCM, ns, "app") == nil {
		t.Fatal("the Sync phase did not run after the PreSync Job completed")
	}
	// HookSucceeded: deleted after success. Hooks are no inventory.
	eventually(t, "the Job deleted (HookSucceeded)", func() (bool, string) {
		j := c.get(gvrJob, ns, "migrate")
		return j == nil || j.GetDeletionTimestamp() != nil, "still there"
	})
	inv, _, _ := store.AppInventory(name)
	for _, e := range inv.Entries {
		if strings.Contains(e.ID, "Job") {
			t.Errorf("a hook is in the inventory: %+v", inv)
		}
	}
	if st := appStatus(t, store, name); st.Sync != "Synced" {
		t.Errorf("status: %+v", st)
	}
}

func TestFailedPreSyncHookRunsSyncFail(t *testing.T) {
	c, store, _, rec, ns := setup(t, map[string]string{
		"app/migrate.yaml": hookJob("migrate", "PreSync", ""),
		"app/cm.yaml":      cm("app"),
		"app/onfail.yaml":  cm("on-fail", "argocd.argoproj.io/hook", "SyncFail"),
	})
	name := "presync-fail-" + ns[len(ns)-6:]
	done := applyAsync(rec, appDoc(name, "apps", "app", ns, true, true))
	eventually(t, "the PreSync Job created", func() (bool, string) {
		return c.get(gvrJob, ns, "migrate") != nil, "absent"
	})
	if c.get(gvrCM, ns, "on-fail") != nil {
		t.Fatal("the SyncFail hook ran before anything failed")
	}
	c.finishJob(ns, "migrate", false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := appStatus(t, store, name)
	if st.Sync != "Error" || !strings.Contains(st.Error, "PreSync hook Job.batch/"+ns+"/migrate failed") {
		t.Errorf("status: %+v", st)
	}
	if c.get(gvrCM, ns, "app") != nil {
		t.Error("a Sync-phase object was applied after the PreSync hook failed")
	}
	if c.get(gvrCM, ns, "on-fail") == nil {
		t.Error("the SyncFail hook did not run")
	}
}

func TestBeforeHookCreationRecreates(t *testing.T) {
	c, _, w, rec, ns := setup(t, map[string]string{
		"app/smoke.yaml": hookJob("smoke", "PostSync", ""),
		"app/cm.yaml":    cm("app"),
	})
	name := "hook-recreate-" + ns[len(ns)-6:]
	done := applyAsync(rec, appDoc(name, "apps", "app", ns, true, true))
	eventually(t, "the PostSync Job created", func() (bool, string) {
		return c.get(gvrJob, ns, "smoke") != nil, "absent"
	})
	if c.get(gvrCM, ns, "app") == nil {
		t.Fatal("the PostSync hook ran before the Sync phase")
	}
	first := c.get(gvrJob, ns, "smoke").GetUID()
	c.finishJob(ns, "smoke", true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The default policy keeps the finished Job until the next sync,
	// which deletes it and creates it again.
	if j := c.get(gvrJob, ns, "smoke"); j == nil || j.GetUID() != first {
		t.Fatal("the Job was not kept after the sync (default policy BeforeHookCreation)")
	}
	w.write("app/cm.yaml", strings.Replace(cm("app"), "k: v", "k: v2", 1))
	w.commit("change")
	eventually(t, "the Job recreated", func() (bool, string) {
		j := c.get(gvrJob, ns, "smoke")
		return j != nil && j.GetUID() != first, "the first Job"
	})
	c.finishJob(ns, "smoke", true)
}

func TestPruneLastPrunesAfterPostSync(t *testing.T) {
	for _, last := range []bool{false, true} {
		t.Run(fmt.Sprint("PruneLast=", last), func(t *testing.T) {
			c, _, w, rec, ns := setup(t, map[string]string{
				"app/cms.yaml": twoConfigMaps,
			})
			name := "prune-last-" + ns[len(ns)-6:]
			doc := appDoc(name, "apps", "app", ns, true, true)
			if last {
				doc = append(doc, "    syncOptions:\n    - PruneLast=true\n"...)
			}
			if _, err := rec.Apply(context.Background(), doc); err != nil {
				t.Fatal(err)
			}
			w.write("app/cms.yaml", cm("keep"))
			w.write("app/smoke.yaml", hookJob("smoke", "PostSync", "HookSucceeded"))
			w.commit("drop one, add a PostSync hook")
			eventually(t, "the PostSync Job created", func() (bool, string) {
				return c.get(gvrJob, ns, "smoke") != nil, "absent"
			})
			if dropped := c.get(gvrCM, ns, "drop") == nil; dropped == last {
				t.Fatalf("PruneLast=%v: pruned before PostSync = %v", last, dropped)
			}
			c.finishJob(ns, "smoke", true)
			eventually(t, "pruned", func() (bool, string) {
				return c.get(gvrCM, ns, "drop") == nil, "still there"
			})
		})
	}
}
