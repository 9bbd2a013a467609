package reconciler_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
)

// jobCompleter plays the Job controller for a benchmark: every Job
// created in ns is set Complete at once. It adds up, per round, the time
// from the Job's creation (seen by its watch) to its completion written,
// which the benchmark subtracts: the hook's own run is not fjord's.
type jobCompleter struct {
	mu   sync.Mutex
	hook time.Duration
}

func (c *cluster) completeJobs(b *testing.B, ns string) *jobCompleter {
	jc := &jobCompleter{}
	res := c.dyn.Resource(gvrJob).Namespace(ns)
	wt, err := res.Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(wt.Stop)
	go func() {
		for ev := range wt.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type != watch.Added {
				continue
			}
			seen := time.Now()
			now := seen.UTC().Format(time.RFC3339)
			cond := func(typ string) map[string]any {
				return map[string]any{"type": typ, "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now, "lastProbeTime": now}
			}
			u.Object["status"] = map[string]any{"startTime": now, "completionTime": now, "succeeded": int64(1),
				"conditions": []any{cond("SuccessCriteriaMet"), cond("Complete")}}
			if _, err := res.UpdateStatus(context.Background(), u, metav1.UpdateOptions{}); err != nil {
				b.Errorf("complete Job %s: %v", u.GetName(), err)
				continue
			}
			jc.mu.Lock()
			jc.hook += time.Since(seen)
			jc.mu.Unlock()
		}
	}()
	return jc
}

// take returns the hook time added up since the last take.
func (jc *jobCompleter) take() time.Duration {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	d := jc.hook
	jc.hook = 0
	return d
}

// benchWaves times push → applied for an app of 3 sync waves of 50
// ConfigMaps behind a PreSync hook Job, every object changed each round:
// three waves (two health waits) and the hook's create, watch and delete,
// with the Job's own run (its completion by the benchmark) excluded.
func benchWaves(b *testing.B, c *cluster) []benchRow {
	ctx := context.Background()
	store := openStore(b, b.TempDir())
	w := newWork(b, store, "waves", "")
	benchRepo(w, 150, benchShape{configMaps: true, waves: 3, preSync: true})
	w.commit("waves")
	rec, _ := c.start(store)
	ns := c.env.Namespace(b)
	jc := c.completeJobs(b, ns)
	name := "bench-waves-" + ns[len(ns)-6:]
	if _, err := rec.Apply(ctx, appDoc(name, "waves", "overlays/bench", ns, true, true)); err != nil {
		b.Fatal(err)
	}
	if st := appStatus(b, store, name); st.Sync != "Synced" {
		b.Fatalf("first sync: %+v", st)
	}
	jc.take()
	var push latencies
	for i := range 20 {
		w.sed("overlays/bench/kustomization.yaml", fmt.Sprintf("release: r%d", i), fmt.Sprintf("release: r%d", i+1))
		commit := w.push(fmt.Sprintf("r%d", i+1))
		t0 := time.Now()
		w.refresh()
		var done time.Time
		eventually(b, "push applied", func() (bool, string) {
			h, _ := store.AppSyncs(name, 1)
			if len(h) == 1 && h[0].Revision == commit && h[0].Error == "" && len(h[0].Changes) >= 150 {
				done = h[0].Start.Add(h[0].Duration)
				return true, ""
			}
			return false, fmt.Sprintf("%+v", h)
		})
		push = append(push, done.Sub(t0)-jc.take())
	}
	b.ReportMetric(float64(push.pct(50))/float64(time.Millisecond), "waves-p50-ms")
	return []benchRow{{"push → 3 waves × 50 + PreSync hook applied", push.String(), "(kubectl has no waves or hooks)"}}
}

// benchConfigMaps times one sync that creates 500 ConfigMaps (a new app
// in a new namespace each round) and one that changes all of them, the
// server-side dry run included; with kubectl, `kubectl apply
// --server-side -k` applies the same overlay after each.
func benchConfigMaps(b *testing.B, c *cluster, kubectl bool) []benchRow {
	ctx := context.Background()
	store := openStore(b, b.TempDir())
	w := newWork(b, store, "cms", "")
	benchRepo(w, 500, benchShape{configMaps: true})
	w.commit("cms")
	rec, _ := c.start(store)
	overlay := filepath.Join(w.dir, "overlays", "bench")
	const rounds = 5
	var create, kcreate, change, kchange latencies
	var name, nsK string
	for i := range rounds {
		if name != "" {
			if _, err := rec.Delete(ctx, name, true); err != nil {
				b.Fatal(err)
			}
		}
		ns := c.env.Namespace(b)
		nsK = c.env.Namespace(b)
		name = fmt.Sprintf("bench-cms-%d-%s", i, ns[len(ns)-6:])
		if _, err := rec.Apply(ctx, appDoc(name, "cms", "overlays/bench", ns, true, true)); err != nil {
			b.Fatal(err)
		}
		h, _ := store.AppSyncs(name, 1)
		if len(h) != 1 || h[0].Error != "" || len(h[0].Changes) != 500 {
			b.Fatalf("create sync: %+v", h)
		}
		create = append(create, h[0].Duration)
		if kubectl {
			kcreate = append(kcreate, c.kubectlApply(overlay, nsK))
		}
	}
	for i := range rounds {
		w.sed("overlays/bench/kustomization.yaml", fmt.Sprintf("release: r%d", i), fmt.Sprintf("release: r%d", i+1))
		commit := w.commit(fmt.Sprintf("r%d", i+1))
		eventually(b, "change applied", func() (bool, string) {
			h, _ := store.AppSyncs(name, 1)
			if len(h) == 1 && h[0].Revision == commit && h[0].Error == "" && len(h[0].Changes) == 500 {
				change = append(change, h[0].Duration)
				return true, ""
			}
			return false, fmt.Sprintf("%+v", h)
		})
		if kubectl {
			kchange = append(kchange, c.kubectlApply(overlay, nsK))
		}
	}
	b.ReportMetric(float64(create.pct(50))/float64(time.Millisecond), "cm500-create-p50-ms")
	b.ReportMetric(float64(change.pct(50))/float64(time.Millisecond), "cm500-change-p50-ms")
	return []benchRow{
		{"500 ConfigMaps created by one sync", create.String(), kcreate.String()},
		{"500 ConfigMaps changed by one sync", change.String(), kchange.String()},
	}
}
