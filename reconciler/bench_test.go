package reconciler_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/fjordhq/fjord/reconciler"
)

// benchShape is what a benchmark app holds besides its objects.
type benchShape struct {
	// configMaps makes every object a ConfigMap (else a tenth are
	// Deployments and a tenth Services).
	configMaps bool
	// waves spreads the objects evenly over that many sync waves.
	waves int
	// preSync adds a PreSync hook Job (deleted when it succeeds).
	preSync bool
}

// benchRepo writes an overlay of n objects with a release annotation
// that every round bumps, so each push changes every object.
func benchRepo(w *work, n int, shape benchShape) {
	var res []string
	for i := range n {
		var doc string
		switch {
		case !shape.configMaps && i%10 == 0:
			doc = fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: d%d
spec:
  replicas: 1
  selector:
    matchLabels: {app: d%d}
  template:
    metadata:
      labels: {app: d%d}
    spec:
      containers:
      - name: app
        image: registry.example.com/app:1.0.0
        resources:
          limits: {cpu: 500m, memory: 128Mi}
`, i, i, i)
		case !shape.configMaps && i%10 == 1:
			doc = fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: s%d\nspec:\n  selector: {app: d%d}\n  ports:\n  - port: 80\n", i, i-1)
		default:
			doc = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\ndata:\n  key: value-%d\n", i, i)
		}
		if shape.waves > 1 {
			wave := i * shape.waves / n
			doc = strings.Replace(doc, "\nmetadata:\n", fmt.Sprintf("\nmetadata:\n  annotations:\n    argocd.argoproj.io/sync-wave: \"%d\"\n", wave), 1)
		}
		name := fmt.Sprintf("o%04d.yaml", i)
		w.write("base/"+name, doc)
		res = append(res, "- "+name)
	}
	if shape.preSync {
		w.write("base/hook.yaml", hookJob("migrate", "PreSync", "HookSucceeded"))
		res = append(res, "- hook.yaml")
	}
	w.write("base/kustomization.yaml", "resources:\n"+strings.Join(res, "\n")+"\n")
	w.write("overlays/bench/kustomization.yaml", `resources:
- ../../base
commonAnnotations:
  example.com/release: r0
images:
- name: registry.example.com/app
  newTag: 1.0.0
`)
}

// latencies summarises samples as p50 and p99.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func (l latencies) String() string {
	return fmt.Sprintf("p50 %7s  p99 %7s  (n=%d)", ms(l.pct(50)), ms(l.pct(99)), len(l))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// kubectlApply times `kubectl apply --server-side -k dir` into ns.
func (c *cluster) kubectlApply(dir, ns string) time.Duration {
	c.t.Helper()
	start := time.Now()
	out, err := exec.Command("kubectl", "--kubeconfig", c.kubeconfig, "apply", "--server-side", "--field-manager=kubectl-bench", "-n", ns, "-k", dir).CombinedOutput()
	if err != nil {
		c.t.Fatalf("kubectl apply -k: %v\n%s", err, out)
	}
	return time.Since(start)
}

// benchRow is one line of the reconciler table.
type benchRow struct{ what, fjord, kubectl string }

// BenchmarkReconciler measures, on the local API server and in one run,
// against `kubectl apply --server-side -k` of the same overlay:
//
//   - push: commit pushed (the ref notification) → every object applied,
//     for apps of 50 and 500 objects (every object changes each round);
//   - drift: a write to spec.replicas → fjord's revert seen by a watch;
//   - no-op resync: a full sync of an unchanged app;
//   - waves: push → applied for 3 sync waves of 50 objects behind a
//     PreSync hook Job (its run excluded: see benchWaves);
//   - 500 ConfigMaps created and changed by one sync (dry run included).
//
// Run it with `make bench`, or alone:
//
//	go test -run '^$' -bench Reconciler -benchtime 1x ./reconciler
func BenchmarkReconciler(b *testing.B) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		b.Fatalf("kubectl is needed for the comparison: %v", err)
	}
	c := newCluster(b)
	ctx := context.Background()
	var rows []benchRow
	for _, n := range []int{50, 500} {
		rounds := 20
		if n >= 500 {
			rounds = 8
		}
		store := openStore(b, b.TempDir())
		w := newWork(b, store, "bench", "")
		benchRepo(w, n, benchShape{})
		w.commit("bench")
		rec, _ := c.start(store)
		ns, nsK := c.env.Namespace(b), c.env.Namespace(b)
		name := fmt.Sprintf("bench-%d-%s", n, ns[len(ns)-6:])
		if _, err := rec.Apply(ctx, appDoc(name, "bench", "overlays/bench", ns, true, true)); err != nil {
			b.Fatal(err)
		}
		if st := appStatus(b, store, name); st.Sync != "Synced" {
			b.Fatalf("first sync: %+v", st)
		}
		overlay := filepath.Join(w.dir, "overlays", "bench")
		c.kubectlApply(overlay, nsK) // create, as fjord's first sync did

		var push, kpush latencies
		for i := range rounds {
			w.sed("overlays/bench/kustomization.yaml", fmt.Sprintf("release: r%d", i), fmt.Sprintf("release: r%d", i+1))
			commit := w.push(fmt.Sprintf("r%d", i+1))
			t0 := time.Now()
			w.refresh()
			var done time.Time
			eventually(b, "push applied", func() (bool, string) {
				h, _ := store.AppSyncs(name, 1)
				if len(h) == 1 && h[0].Revision == commit && h[0].Error == "" && len(h[0].Changes) == n {
					done = h[0].Start.Add(h[0].Duration)
					return true, ""
				}
				return false, fmt.Sprintf("%+v", h)
			})
			push = append(push, done.Sub(t0))
			kpush = append(kpush, c.kubectlApply(overlay, nsK))
		}
		rows = append(rows, benchRow{fmt.Sprintf("push → %d objects applied", n), push.String(), kpush.String()})

		var noop, knoop latencies
		for range rounds {
			rec, err := rec.Sync(ctx, name, reconciler.SyncOptions{})
			if err != nil || len(rec.Changes) != 0 {
				b.Fatalf("no-op sync changed things: %v %+v", err, rec)
			}
			noop = append(noop, rec.Duration)
			knoop = append(knoop, c.kubectlApply(overlay, nsK))
		}
		rows = append(rows, benchRow{fmt.Sprintf("no-op resync, %d objects", n), noop.String(), knoop.String()})

		if n == 50 {
			// Drift: someone scales d0 to 5; fjord puts back 1. Timed
			// from the write to the revert, seen by a watch.
			res := c.dyn.Resource(gvrDeploy).Namespace(ns)
			var drift latencies
			for range 50 {
				wt, err := res.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=d0"})
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if _, err := res.Patch(ctx, "d0", types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{FieldManager: "drifter"}); err != nil {
					b.Fatal(err)
				}
				deadline := time.After(waitFor)
			wait:
				for {
					select {
					case ev := <-wt.ResultChan():
						if ev.Type != watch.Modified {
							continue
						}
						if u, ok := ev.Object.(interface{ UnstructuredContent() map[string]any }); ok {
							spec, _ := u.UnstructuredContent()["spec"].(map[string]any)
							if r, _ := spec["replicas"].(int64); r == 1 {
								drift = append(drift, time.Since(t0))
								break wait
							}
						}
					case <-deadline:
						b.Fatal("drift not reverted")
					}
				}
				wt.Stop()
			}
			rows = append(rows, benchRow{"drift write → reverted (50-object app)", drift.String(), "(no self-heal; restoring = a kubectl apply -k, see no-op row)"})
			b.ReportMetric(float64(drift.pct(99))/float64(time.Millisecond), "drift-p99-ms")
		}
		b.ReportMetric(float64(push.pct(50))/float64(time.Millisecond), fmt.Sprintf("push%d-p50-ms", n))
	}
	rows = append(rows, benchWaves(b, c)...)
	rows = append(rows, benchConfigMaps(b, c, true)...)
	fmt.Fprintf(os.Stdout, "\nfjord reconciler vs kubectl apply --server-side -k, local kube-apiserver %s\n", "(internal/testenv)")
	fmt.Fprintf(os.Stdout, "%-42s %-40s %s\n", "", "fjord", "kubectl apply --server-side -k")
	for _, r := range rows {
		fmt.Fprintf(os.Stdout, "%-42s %-40s %s\n", r.what, r.fjord, r.kubectl)
	}
}
