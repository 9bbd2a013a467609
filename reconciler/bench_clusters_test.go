package reconciler_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// hostCounter counts requests by API server (host:port), when on.
type hostCounter struct {
	on atomic.Bool
	mu sync.Mutex
	n  map[string]int
}

func (h *hostCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if h.on.Load() {
			h.mu.Lock()
			h.n[req.URL.Host]++
			h.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (h *hostCounter) take() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.n
	h.n = map[string]int{}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// clusterResync is what runClusterResync measured, per resync of every
// app: wall time, this process's CPU, and the requests sent to each API
// server.
type clusterResync struct {
	wall, cpu time.Duration
	requests  map[string]int // by host, summed over the rounds
	rounds    int
}

// runClusterResync stores apps apps of 5 objects each, every app in its
// own namespace, spread round-robin over the given clusters (destination
// names; "in-cluster" is c's), starts a reconciler that syncs them all,
// then resyncs every app rounds times with nothing changed (two at a
// time, as Run's default workers do) and measures those resyncs.
func runClusterResync(tb testing.TB, c *cluster, add []storage.Cluster, creds []storage.ClusterCredentials, dests []string, apps, rounds int) clusterResync {
	tb.Helper()
	ctx := context.Background()
	suffix := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	store := openStore(tb, tb.TempDir())
	for i, cl := range add {
		if _, err := store.PutCluster(cl, creds[i]); err != nil {
			tb.Fatal(err)
		}
	}
	w := newWork(tb, store, "gitops", "")
	files := scaleObjects(5)
	for i := range apps {
		w.write(fmt.Sprintf("apps/a%04d/objects.yaml", i), files)
	}
	head := w.commit("fleet")
	names := make([]string, apps)
	for i := range apps {
		names[i] = fmt.Sprintf("mc-%s-%04d", suffix, i)
		dest := dests[i%len(dests)]
		doc := clusterApp(names[i], fmt.Sprintf("apps/a%04d", i), "name: "+dest, names[i])
		meta := storage.AppMeta{Project: "default"}
		if dest != reconciler.InClusterName {
			meta.Cluster = dest
		}
		if _, err := store.PutApp(names[i], string(doc), meta); err != nil {
			tb.Fatal(err)
		}
	}
	counter := &hostCounter{n: map[string]int{}}
	rec, stop := c.start(store, func(rc *reconciler.Config) {
		rc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		rc.WrapTransport = counter.wrap
	})
	defer stop()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		all, err := store.Apps()
		if err != nil {
			tb.Fatal(err)
		}
		synced := 0
		for _, a := range all {
			switch {
			case a.Status.Sync == storage.Synced && a.Status.SyncedCommit == head:
				synced++
			case a.Status.Sync == storage.SyncError:
				tb.Fatalf("app %s: %s", a.Name, a.Status.Error)
			}
		}
		if synced == apps {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d apps synced after 10 minutes", synced, apps)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Let the watches' first events and the health updates settle.
	time.Sleep(2 * time.Second)

	res := clusterResync{rounds: rounds}
	counter.take()
	counter.on.Store(true)
	cpu0, t0 := selfCPU(), time.Now()
	for range rounds {
		var (
			next atomic.Int64
			wg   sync.WaitGroup
			errs = make(chan error, 2)
		)
		for range 2 {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < apps; i = int(next.Add(1)) - 1 {
					r, err := rec.Sync(ctx, names[i], reconciler.SyncOptions{})
					if err == nil && len(r.Changes) != 0 {
						err = fmt.Errorf("resync of unchanged app %s changed %+v", names[i], r.Changes)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			tb.Fatal(err)
		}
	}
	res.wall, res.cpu = time.Since(t0), selfCPU()-cpu0
	counter.on.Store(false)
	res.requests = counter.take()
	return res
}

// BenchmarkReconcilerClusters measures an idle resync of 100 apps (5
// objects each) spread over two clusters, each a kube-apiserver with its
// own etcd: the CPU fjord spends per resync of every app and the API
// requests it sends each cluster (the goal: none for an unchanged app),
// beside the same 100 apps on one cluster in the same run. Run it with
// `make bench`, or alone:
//
//	go test -run '^$' -bench ReconcilerClusters -benchtime 1x ./reconciler
func BenchmarkReconcilerClusters(b *testing.B) {
	const apps, rounds = 100, 5
	c1 := newCluster(b)
	env2, _ := otherCluster(b)
	cl, creds, err := reconciler.ClusterFromKubeconfig(env2.Kubeconfig(), "")
	if err != nil {
		b.Fatal(err)
	}
	cl.Name = "second"
	two := runClusterResync(b, c1, []storage.Cluster{cl}, []storage.ClusterCredentials{creds}, []string{reconciler.InClusterName, "second"}, apps, rounds)
	one := runClusterResync(b, c1, nil, nil, []string{reconciler.InClusterName}, apps, rounds)

	per := func(r clusterResync) (time.Duration, float64) {
		total := 0
		for _, n := range r.requests {
			total += n
		}
		return r.cpu / time.Duration(r.rounds), float64(total) / float64(r.rounds)
	}
	cpu2, req2 := per(two)
	cpu1, req1 := per(one)
	fmt.Printf("\nidle resync of %d unchanged apps × 5 objects (fjord app sync of each, 2 at a time; %d rounds), local kube-apiservers (internal/testenv)\n", apps, rounds)
	fmt.Printf("%-34s %12s %14s %16s  %s\n", "", "CPU/resync", "CPU/app", "requests/resync", "wall/resync")
	fmt.Printf("%-34s %12s %14s %16.1f  %s\n", "2 clusters (50 apps each)", cpu2.Round(time.Millisecond), (cpu2 / apps).Round(time.Microsecond), req2, (two.wall / rounds).Round(time.Millisecond))
	fmt.Printf("%-34s %12s %14s %16.1f  %s\n", "1 cluster (all 100 apps)", cpu1.Round(time.Millisecond), (cpu1 / apps).Round(time.Microsecond), req1, (one.wall / rounds).Round(time.Millisecond))
	fmt.Printf("CPU ratio 2 clusters / 1 cluster: %.2f; requests by server (2 clusters, all rounds): %v\n", cpu2.Seconds()/cpu1.Seconds(), two.requests)
	if req2 != 0 || req1 != 0 {
		b.Errorf("an idle resync of unchanged apps sent API requests: %v (2 clusters), %v (1 cluster)", two.requests, one.requests)
	}
	b.ReportMetric(cpu2.Seconds()*1000, "cpu-ms/resync")
	b.ReportMetric(req2, "requests/resync")
	b.ReportMetric(cpu2.Seconds()/cpu1.Seconds(), "cpu-ratio-2v1")
}
