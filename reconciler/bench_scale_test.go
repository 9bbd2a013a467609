package reconciler_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// scaleResult is what one run of the single-primary simulation measured.
type scaleResult struct {
	apps, objects, workers int
	// syncAll is from Run's start, with every app stored and nothing in
	// the cluster, to every app Synced at the pushed commit.
	syncAll time.Duration
	// syncCPU and apiCPU are the CPU time of fjord's process and of
	// kube-apiserver + etcd over syncAll.
	syncCPU, syncAPICPU time.Duration
	// peakRSS and peakHeap are the process's highest resident set and
	// live Go heap, sampled every 100 ms from Run's start to the end of
	// the resync pass; idleHeap is the live heap after a GC once idle.
	peakRSS, peakHeap, idleHeap uint64
	// watches is how many watches fjord holds open on the API server.
	watches int
	// resync is one full resync of every app (what each
	// --resync-interval tick queues), with nothing changed.
	resync, resyncCPU, resyncAPICPU time.Duration
	// resyncReads and resyncWrites are the API requests fjord sent during
	// the resync: reads (GET, LIST, new watches) and writes.
	resyncReads, resyncWrites int64
	// idle is a quiet stretch with no sync at all: the open watches'
	// cost. idleCPU and idleAPICPU are fjord's and the API server's CPU
	// over it.
	idle, idleCPU, idleAPICPU time.Duration
	// loadStart and loadEnd are the machine's load averages: the figures
	// above are only as good as the machine was quiet.
	loadStart, loadEnd string
}

// requestCounter counts the requests of a client-go transport, when on.
type requestCounter struct {
	on            atomic.Bool
	reads, writes atomic.Int64
}

type countingTransport struct {
	c    *requestCounter
	next http.RoundTripper
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.c.on.Load() {
		switch req.Method {
		case http.MethodGet, http.MethodHead:
			t.c.reads.Add(1)
		default:
			t.c.writes.Add(1)
		}
	}
	return t.next.RoundTrip(req)
}

// scaleApp is the Application of app i: its own directory of the fleet
// repo, its own namespace, created by the sync.
func scaleApp(i int, suffix string) (name, doc string) {
	name = fmt.Sprintf("scale-%s-%04d", suffix, i)
	doc = string(appDoc(name, "fleet", fmt.Sprintf("apps/a%04d", i), name, true, true)) +
		"    syncOptions:\n    - CreateNamespace=true\n"
	return name, doc
}

// scaleObjects is the plain-YAML directory of one app: n objects, one
// Deployment and one headless Service (the test API server's Service
// range has 254 addresses) and ConfigMaps for the rest, as a small
// service's manifests look.
func scaleObjects(n int) string {
	var docs []string
	for j := range n {
		switch j {
		case 0:
			docs = append(docs, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example.com/web:1.0.0
        resources:
          limits: {cpu: 500m, memory: 128Mi}
`)
		case 1:
			docs = append(docs, "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports:\n  - port: 80\n")
		default:
			docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-%02d\ndata:\n  key: value-%d\n  level: info\n", j, j))
		}
	}
	return strings.Join(docs, "---\n")
}

// runScale simulates one primary holding apps apps of objects objects
// each, on the shared test API server: the apps are stored before the
// reconciler starts, as after a restart or a bootstrap, so Run syncs all
// of them from nothing with its default workers; then one full resync
// of the unchanged fleet; then a quiet stretch of idle seconds.
func runScale(tb testing.TB, apps, objects, workers int, idle time.Duration) scaleResult {
	tb.Helper()
	c := newCluster(tb)
	ctx := context.Background()
	if workers <= 0 {
		workers = 2 // Config.Workers' default
	}
	res := scaleResult{apps: apps, objects: objects, workers: workers, idle: idle, loadStart: loadavg()}
	// Apps and their namespaces are new on every run (-count, or the
	// small test beside the benchmark on the same API server).
	suffix := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)

	store := openStore(tb, tb.TempDir())
	w := newWork(tb, store, "fleet", "")
	files := scaleObjects(objects)
	names := make([]string, apps)
	for i := range apps {
		w.write(fmt.Sprintf("apps/a%04d/objects.yaml", i), files)
	}
	head := w.commit("fleet")
	for i := range apps {
		name, doc := scaleApp(i, suffix)
		names[i] = name
		if _, err := store.PutApp(name, doc, storage.AppMeta{Project: "default"}); err != nil {
			tb.Fatal(err)
		}
	}

	apiPids := kubePids(tb, c.env.URL())
	watchesBefore := apiWatches(tb, c)
	counter := &requestCounter{}
	sampler := startMemSampler()

	cpu0, api0, t0 := selfCPU(), pidsCPU(apiPids), time.Now()
	rec, stop := c.start(store, func(rc *reconciler.Config) {
		rc.Workers = workers
		rc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		rc.RESTConfig.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return countingTransport{c: counter, next: rt}
		}
	})
	defer stop()
	for last := ""; ; {
		all, err := store.Apps()
		if err != nil {
			tb.Fatal(err)
		}
		synced := 0
		for _, a := range all {
			switch {
			case a.Status.Sync == "Synced" && a.Status.SyncedCommit == head:
				synced++
			case a.Status.Sync == "Error":
				tb.Fatalf("app %s: %s", a.Name, a.Status.Error)
			}
		}
		if synced == apps {
			break
		}
		if time.Since(t0) > 30*time.Minute {
			tb.Fatalf("not every app synced after 30 minutes: %d of %d (%s)", synced, apps, last)
		}
		last = fmt.Sprintf("%d synced", synced)
		time.Sleep(200 * time.Millisecond)
	}
	res.syncAll = time.Since(t0)
	res.syncCPU, res.syncAPICPU = selfCPU()-cpu0, pidsCPU(apiPids)-api0
	res.watches = apiWatches(tb, c) - watchesBefore

	// One full resync, as a --resync-interval tick queues it: every app,
	// by as many at once as Run's workers.
	counter.on.Store(true)
	if p := os.Getenv("FJORD_BENCH_SCALE_PROFILE"); p != "" {
		// Where a resync's CPU goes: go tool pprof FILE.
		f, err := os.Create(p)
		if err != nil {
			tb.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			tb.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0, api0, t0 = selfCPU(), pidsCPU(apiPids), time.Now()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, res.workers)
	)
	for range res.workers {
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
	res.resync = time.Since(t0)
	res.resyncCPU, res.resyncAPICPU = selfCPU()-cpu0, pidsCPU(apiPids)-api0
	counter.on.Store(false)
	res.resyncReads, res.resyncWrites = counter.reads.Load(), counter.writes.Load()
	res.peakRSS, res.peakHeap = sampler.stop()

	cpu0, api0 = selfCPU(), pidsCPU(apiPids)
	time.Sleep(idle)
	res.idleCPU, res.idleAPICPU = selfCPU()-cpu0, pidsCPU(apiPids)-api0
	runtime.GC()
	res.idleHeap = heapLive()
	res.loadEnd = loadavg()
	return res
}

// BenchmarkSinglePrimaryScale measures how far one primary goes: 1,000 apps
// of 20 objects each (FJORD_BENCH_SCALE_APPS and _OBJECTS change that),
// each in its own namespace, on the local test API server; the time to
// sync them all from a cold start, the CPU and memory that took, one
// full resync of the unchanged fleet (CPU and API requests), and the CPU
// of doing nothing for 30 s with the fleet's watches open, with the
// reconciler's default 2 workers (FJORD_BENCH_SCALE_WORKERS changes it). The figures
// are in README's "How far one primary goes". FJORD_BENCH_SCALE_PROFILE=FILE
// writes a CPU profile of the resync pass. Run it with `make bench`, or
// alone:
//
//	go test -run '^$' -bench SinglePrimaryScale -benchtime 1x -timeout 40m ./reconciler
func BenchmarkSinglePrimaryScale(b *testing.B) {
	apps, objects := envInt(b, "FJORD_BENCH_SCALE_APPS", 1000), envInt(b, "FJORD_BENCH_SCALE_OBJECTS", 20)
	r := runScale(b, apps, objects, envInt(b, "FJORD_BENCH_SCALE_WORKERS", 2), 30*time.Second)
	pct := func(cpu, wall time.Duration) string {
		return fmt.Sprintf("%.0f%% of a core", 100*cpu.Seconds()/wall.Seconds())
	}
	mib := func(n uint64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
	fmt.Printf("\nsingle primary: %d apps × %d objects = %d objects, each app in its own namespace, %d workers, local kube-apiserver (internal/testenv), %d cores\n",
		r.apps, r.objects, r.apps*r.objects, r.workers, runtime.NumCPU())
	fmt.Printf("load average %s at the start, %s at the end\n", r.loadStart, r.loadEnd)
	rows := [][2]string{
		{"sync all from a cold start", fmt.Sprintf("%s (%.1f apps/s, %.0f objects/s)", r.syncAll.Round(time.Second), float64(r.apps)/r.syncAll.Seconds(), float64(r.apps*r.objects)/r.syncAll.Seconds())},
		{"  CPU: fjord / kube-apiserver+etcd", fmt.Sprintf("%s / %s", pct(r.syncCPU, r.syncAll), pct(r.syncAPICPU, r.syncAll))},
		{"peak memory of fjord's process", fmt.Sprintf("RSS %s, Go heap %s", mib(r.peakRSS), mib(r.peakHeap))},
		{"live Go heap once idle", fmt.Sprintf("%s (%.1f KiB per object)", mib(r.idleHeap), float64(r.idleHeap)/1024/float64(r.apps*r.objects))},
		{"watches fjord holds open", strconv.Itoa(r.watches)},
		{"one full resync, nothing changed", fmt.Sprintf("%s (%.1f ms per app)", r.resync.Round(100*time.Millisecond), float64(r.resync.Milliseconds())/float64(r.apps))},
		{"  CPU: fjord / kube-apiserver+etcd", fmt.Sprintf("%s CPU (%s) / %s CPU", r.resyncCPU.Round(10*time.Millisecond), pct(r.resyncCPU, r.resync), r.resyncAPICPU.Round(10*time.Millisecond))},
		{"  API requests: reads / writes", fmt.Sprintf("%d / %d", r.resyncReads, r.resyncWrites)},
		{fmt.Sprintf("idle %s, watches open", r.idle), fmt.Sprintf("fjord %s, kube-apiserver+etcd %s", pct(r.idleCPU, r.idle), pct(r.idleAPICPU, r.idle))},
	}
	for _, row := range rows {
		fmt.Printf("%-40s %s\n", row[0], row[1])
	}
	b.ReportMetric(r.syncAll.Seconds(), "sync-all-s")
	b.ReportMetric(float64(r.peakRSS)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(r.resyncCPU.Seconds(), "resync-cpu-s")
}

// TestScaleIdleResyncWritesNothing is the simulation in small (20 apps of
// 5 objects): every app syncs from a cold start, and a full resync of the
// unchanged fleet changes nothing and sends the API server no write.
func TestScaleIdleResyncWritesNothing(t *testing.T) {
	r := runScale(t, 20, 5, 0, 0)
	if r.resyncWrites != 0 {
		t.Errorf("a resync of 20 unchanged apps sent %d writes to the API server", r.resyncWrites)
	}
	t.Logf("20 apps × 5 objects: synced in %s; resync %s, %d reads, %d writes; %d watches",
		r.syncAll.Round(time.Millisecond), r.resync.Round(time.Millisecond), r.resyncReads, r.resyncWrites, r.watches)
}

func envInt(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// loadavg is the 1-, 5- and 15-minute load averages of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// selfCPU is the CPU time (user + system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// pidsCPU adds up the CPU time of processes from /proc/PID/stat.
func pidsCPU(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * clockTick
	}
	return total
}

// kubePids finds the kube-apiserver serving apiURL and its etcd, by their
// command lines.
func kubePids(tb testing.TB, apiURL string) []int {
	tb.Helper()
	u, err := url.Parse(apiURL)
	if err != nil {
		tb.Fatal(err)
	}
	cmdlines := map[int][]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || len(b) == 0 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		cmdlines[pid] = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	}
	flag := func(args []string, name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
		}
		return ""
	}
	var pids []int
	etcd := ""
	for pid, args := range cmdlines {
		if filepath.Base(args[0]) == "kube-apiserver" && flag(args, "--secure-port") == u.Port() {
			pids = append(pids, pid)
			etcd = flag(args, "--etcd-servers")
		}
	}
	for pid, args := range cmdlines {
		if etcd != "" && filepath.Base(args[0]) == "etcd" && flag(args, "--listen-client-urls") == etcd {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 2 {
		tb.Fatalf("found %d of kube-apiserver (port %s) and its etcd in /proc", len(pids), u.Port())
	}
	return pids
}

// apiWatches is how many watches the API server is serving, from its
// apiserver_longrunning_requests gauge.
func apiWatches(tb testing.TB, c *cluster) int {
	tb.Helper()
	resp, err := c.env.HTTPClient().Get(c.env.URL() + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "apiserver_longrunning_requests{") && strings.Contains(l, `verb="WATCH"`) {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			n += v
		}
	}
	return int(n)
}

// memSampler records the peak RSS and live heap of this process.
type memSampler struct {
	done          chan struct{}
	wg            sync.WaitGroup
	rss, heapPeak uint64
}

func startMemSampler() *memSampler {
	s := &memSampler{done: make(chan struct{})}
	s.wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			s.rss = max(s.rss, rss())
			s.heapPeak = max(s.heapPeak, heapLive())
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

func (s *memSampler) stop() (rss, heap uint64) {
	close(s.done)
	s.wg.Wait()
	return s.rss, s.heapPeak
}

// rss is this process's resident set size (VmRSS).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heapLive is the bytes of heap objects (live and not yet swept).
func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
