package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/fjordtest"
	gossh "golang.org/x/crypto/ssh"
)

// config is the load's shape: FJORD_LOAD_DURATION, FJORD_LOAD_FETCHERS,
// FJORD_LOAD_PUSHERS (make load: 60s, 200, 20), else the short version of
// make test.
type config struct {
	duration          time.Duration
	fetchers, pushers int
}

func loadConfig(t *testing.T) config {
	c := config{duration: 3 * time.Second, fetchers: 16, pushers: 4}
	if v := os.Getenv("FJORD_LOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("FJORD_LOAD_DURATION=%q: %v", v, err)
		}
		c.duration = d
	}
	for env, dst := range map[string]*int{"FJORD_LOAD_FETCHERS": &c.fetchers, "FJORD_LOAD_PUSHERS": &c.pushers} {
		if v := os.Getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", env, v)
			}
			*dst = n
		}
	}
	return c
}

// stats collects the outcome of one load run.
type stats struct {
	mu        sync.Mutex
	fast      []time.Duration // anything new? (v2 ls-refs on an open connection)
	fetches   []time.Duration // git fetch with the CLI
	clones    []time.Duration
	pushes    []time.Duration
	refused   atomic.Int64 // documented --max-sessions refusals
	errors    []string
	peakGorou int
}

func (s *stats) add(dst *[]time.Duration, d time.Duration) {
	s.mu.Lock()
	*dst = append(*dst, d)
	s.mu.Unlock()
}

// fail records an error unless it is the documented refusal of a session
// over --max-sessions.
func (s *stats) fail(what string, err error, out string) {
	if strings.Contains(out, "too many concurrent git sessions") || strings.Contains(err.Error(), "too many concurrent git sessions") {
		s.refused.Add(1)
		return
	}
	s.mu.Lock()
	if len(s.errors) < 20 {
		s.errors = append(s.errors, fmt.Sprintf("%s: %v: %s", what, err, out))
	} else {
		s.errors = append(s.errors[:20], "…")
	}
	s.mu.Unlock()
}

// TestLoad runs fetch/clone clients and pushers against one fjord over
// loopback for a fixed time, then checks that there was no error (other
// than the documented --max-sessions refusal, in the phase that sets it
// below the load) and that fjord's goroutines and file descriptors come
// back to where they were once the load stops. It prints the fast path's
// latency under load, clone, fetch and push latencies, peak RSS and
// goroutines.
func TestLoad(t *testing.T) {
	c := loadConfig(t)
	s := fjordtest.New(t)
	if err := s.Start("--max-sessions", "1024"); err != nil {
		t.Fatal(err)
	}
	seedRepo(t, s)
	baseG, baseFD := settle(t, s, -1, -1)
	st := run(t, s, c)
	report(t, s, "under load (--max-sessions 1024)", c, st)
	if len(st.fast) == 0 || len(st.pushes) == 0 {
		t.Errorf("the load did not run: %d polls, %d pushes in %s", len(st.fast), len(st.pushes), c.duration)
	}
	if len(st.errors) > 0 || st.refused.Load() > 0 {
		t.Errorf("%d errors, %d refusals under a load within --max-sessions:\n%s", len(st.errors), st.refused.Load(), strings.Join(st.errors, "\n"))
	}
	g, fd := settle(t, s, baseG, baseFD)
	fmt.Printf("after the load: goroutines %d (before %d), open fds %d (before %d)\n", g, baseG, fd, baseFD)

	// Below the load, the only errors are the documented refusals.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	limit := max(2, (c.fetchers+c.pushers)/4)
	if err := s.Start("--max-sessions", strconv.Itoa(limit)); err != nil {
		t.Fatal(err)
	}
	short := c
	short.duration = min(c.duration, 5*time.Second)
	st = run(t, s, short)
	report(t, s, fmt.Sprintf("with --max-sessions %d below the load", limit), short, st)
	if len(st.errors) > 0 {
		t.Errorf("errors other than the --max-sessions refusal:\n%s", strings.Join(st.errors, "\n"))
	}
	fmt.Printf("refused by --max-sessions %d: %d\n", limit, st.refused.Load())
}

// seedRepo creates repo "load" with 50 commits.
func seedRepo(t *testing.T, s *fjordtest.Server) {
	ctx := t.Context()
	if out, err := s.Fjord("repo", "create", "load"); err != nil {
		t.Fatalf("repo create: %v %s", err, out)
	}
	work := filepath.Join(s.Dir, "seed")
	if out, err := s.Git(ctx, "", "init", "-q", "--initial-branch=main", work); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for i := 0; i < 50; i++ {
		os.WriteFile(filepath.Join(work, fmt.Sprintf("f%d.txt", i%20)), []byte(strings.Repeat(fmt.Sprintf("line %d\n", i), 50)), 0o644)
		s.Git(ctx, work, "add", ".")
		if out, err := s.Git(ctx, work, "commit", "-q", "-m", fmt.Sprintf("c%d", i)); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	if out, err := s.Git(ctx, work, "push", "-q", s.URL("load"), "HEAD:main"); err != nil {
		t.Fatalf("seed push: %v %s", err, out)
	}
}

// run prepares the clients (each fetcher clones and opens its SSH
// connection, each pusher clones), then drives the load for c.duration and
// returns its stats; it also samples fjord's goroutines.
func run(t *testing.T, s *fjordtest.Server, c config) *stats {
	st := &stats{}
	var ready sync.WaitGroup
	fetchers := make([]*fetchClient, c.fetchers)
	pushers := make([]string, c.pushers)
	for i := range fetchers {
		ready.Add(1)
		go func() { defer ready.Done(); fetchers[i] = newFetcher(t, s, st) }()
	}
	for i := range pushers {
		ready.Add(1)
		go func() { defer ready.Done(); pushers[i] = newPusher(t, s, st) }()
	}
	ready.Wait()

	ctx, cancel := context.WithTimeout(t.Context(), c.duration)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range fetchers {
		if f != nil {
			wg.Add(1)
			go func() { defer wg.Done(); f.run(ctx, s, st) }()
		}
	}
	for i, work := range pushers {
		if work != "" {
			wg.Add(1)
			go func() { defer wg.Done(); push(ctx, s, fmt.Sprintf("%d-%d", time.Now().UnixNano(), i), work, st) }()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if g, _, err := metrics(s); err == nil {
				st.mu.Lock()
				st.peakGorou = max(st.peakGorou, g)
				st.mu.Unlock()
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	wg.Wait()
	for _, f := range fetchers {
		if f != nil {
			f.conn.Close()
		}
	}
	return st
}

// fetchClient is a CI job or GitOps agent: a clone and an open SSH
// connection.
type fetchClient struct {
	dir  string
	conn *gossh.Client
}

// newFetcher clones the repo and opens a connection; nil if either
// failed (recorded in st).
func newFetcher(t *testing.T, s *fjordtest.Server, st *stats) *fetchClient {
	f := &fetchClient{dir: filepath.Join(t.TempDir(), "clone")}
	if !clone(t.Context(), s, f.dir, st) {
		return nil
	}
	conn, err := s.Dial(s.Key)
	if err != nil {
		st.fail("ssh dial", err, "")
		return nil
	}
	f.conn = conn
	return f
}

func clone(ctx context.Context, s *fjordtest.Server, dir string, st *stats) bool {
	start := time.Now()
	if out, err := s.Git(ctx, "", "clone", "-q", "--bare", s.URL("load"), dir); err != nil {
		if ctx.Err() == nil {
			st.fail("clone", err, out)
		}
		return false
	}
	st.add(&st.clones, time.Since(start))
	return true
}

// run loops until ctx is done: "anything new?" polls on the open
// connection, every 10th round a git fetch, every 50th a fresh clone.
func (f *fetchClient) run(ctx context.Context, s *fjordtest.Server, st *stats) {
	for n := 0; ctx.Err() == nil; n++ {
		start := time.Now()
		switch {
		case n%50 == 49:
			dir := f.dir + strconv.Itoa(n)
			clone(ctx, s, dir, st)
			os.RemoveAll(dir)
		case n%10 == 9:
			out, err := s.Git(ctx, f.dir, "fetch", "-q", s.URL("load"), "+refs/heads/*:refs/heads/*")
			if err != nil {
				if ctx.Err() == nil {
					st.fail("fetch", err, out)
				}
				continue
			}
			st.add(&st.fetches, time.Since(start))
		default:
			if err := fjordtest.AnythingNew(f.conn, "load"); err != nil {
				if ctx.Err() == nil {
					st.fail("anything new", err, "")
				}
				continue
			}
			st.add(&st.fast, time.Since(start))
		}
	}
}

// newPusher clones a work tree; empty if that failed.
func newPusher(t *testing.T, s *fjordtest.Server, st *stats) string {
	work := filepath.Join(t.TempDir(), "work")
	if out, err := s.Git(t.Context(), "", "clone", "-q", s.URL("load"), work); err != nil {
		st.fail("pusher clone", err, out)
		return ""
	}
	return work
}

// push pushes single commits to a branch of its own, named for id, until
// ctx is done.
func push(ctx context.Context, s *fjordtest.Server, id, work string, st *stats) {
	for n := 0; ctx.Err() == nil; n++ {
		os.WriteFile(filepath.Join(work, "pusher-"+id+".txt"), []byte(strconv.Itoa(n)), 0o644)
		s.Git(ctx, work, "add", ".")
		if _, err := s.Git(ctx, work, "commit", "-q", "-m", fmt.Sprintf("pusher %s push %d", id, n)); err != nil {
			return
		}
		start := time.Now()
		out, err := s.Git(ctx, work, "push", "-q", "origin", "HEAD:refs/heads/pusher-"+id)
		if err != nil {
			if ctx.Err() == nil {
				st.fail("push", err, out)
			}
			continue
		}
		st.add(&st.pushes, time.Since(start))
	}
}

// metrics reads go_goroutines and process_open_fds from /metrics.
func metrics(s *fjordtest.Server) (goroutines, fds int, err error) {
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_goroutines":
			goroutines = int(v)
		case "process_open_fds":
			fds = int(v)
		}
	}
	return goroutines, fds, sc.Err()
}

// settle waits until fjord's goroutines and fds are back to at most the
// baseline plus a small allowance (for the /metrics request itself and
// idle connections closing), failing after 20 s; with a negative baseline
// it waits for two equal readings and returns them.
func settle(t *testing.T, s *fjordtest.Server, baseG, baseFD int) (int, int) {
	deadline := time.Now().Add(20 * time.Second)
	prevG, prevFD := -1, -1
	for {
		g, fd, err := metrics(s)
		if err != nil {
			t.Fatal(err)
		}
		if baseG < 0 && g == prevG && fd == prevFD {
			return g, fd
		}
		if baseG >= 0 && g <= baseG+5 && fd <= baseFD+3 {
			return g, fd
		}
		if time.Now().After(deadline) {
			if baseG >= 0 {
				t.Errorf("after the load fjord holds %d goroutines (before %d) and %d open fds (before %d): a leak", g, baseG, fd, baseFD)
			}
			return g, fd
		}
		prevG, prevFD = g, fd
		time.Sleep(500 * time.Millisecond)
	}
}

// peakRSS reads VmHWM (the peak resident set) of the server process.
func peakRSS(s *fjordtest.Server) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func report(t *testing.T, s *fjordtest.Server, title string, c config, st *stats) {
	st.mu.Lock()
	defer st.mu.Unlock()
	fmt.Printf("\nload %s: %d fetch/clone clients, %d pushers, %s over loopback\n", title, c.fetchers, c.pushers, c.duration)
	fmt.Printf("%-28s %8s %10s %10s %10s\n", "", "count", "p50", "p99", "max")
	for _, row := range []struct {
		name string
		ds   []time.Duration
	}{{"anything new? (fast path)", st.fast}, {"git fetch", st.fetches}, {"git clone", st.clones}, {"git push", st.pushes}} {
		fmt.Printf("%-28s %8d %10s %10s %10s\n", row.name, len(row.ds), pct(row.ds, .5).Round(10*time.Microsecond),
			pct(row.ds, .99).Round(10*time.Microsecond), pct(row.ds, 1).Round(10*time.Microsecond))
	}
	fmt.Printf("errors %d, refused by --max-sessions %d, fjord peak RSS %s, peak goroutines %d\n", len(st.errors), st.refused.Load(), peakRSS(s), st.peakGorou)
}
