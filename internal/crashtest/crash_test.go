package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/fjordhq/fjord/internal/fjordtest"
	"github.com/fjordhq/fjord/internal/testenv"
	"github.com/fjordhq/fjord/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// trials is the number of kill -9 trials per kind: FJORD_CRASH_TRIALS
// (make crash sets 100), else 3, enough for make test.
func trials(t *testing.T) int {
	if v := os.Getenv("FJORD_CRASH_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FJORD_CRASH_TRIALS=%q: want a positive number", v)
		}
		return n
	}
	return 3
}

// kind is one workload the server is killed in the middle of.
type kind struct {
	name string
	// maxDelay bounds the random moment of the kill after the workload
	// starts.
	maxDelay time.Duration
	setup    func(ctx context.Context, t *testing.T, s *fjordtest.Server)
	// work runs until ctx is done or the server is gone, recording what
	// the server acknowledged.
	work func(ctx context.Context, s *fjordtest.Server)
	// verify runs after the restart and returns the violations found.
	verify func(ctx context.Context, s *fjordtest.Server) []string
	// repos are checked after every restart: fsck clean, served refs
	// equal to disk.
	repos []string
	// acked counts what the server acknowledged, for the table.
	acked func() int
}

type result struct {
	kind       string
	trials     int
	acked      int
	violations []string
	// failovers are the failover kind's times from kill to a new primary.
	failovers []time.Duration
}

// TestCrash kills the real `fjord serve` with SIGKILL at random moments
// during pushes, mirror syncs, app syncs with prune and admin writes, and
// after each restart checks: every acknowledged write is there, bbolt's
// consistency check passes on the closed database, git fsck is clean, the
// refs served from the snapshot equal the refs on disk, and the next sync
// converges (mirror refs equal upstream's, the cluster holds exactly the
// objects of the commit). The failover kind kills the primary of a
// replica group instead (see runFailover). It prints the table of trials
// and violations.
func TestCrash(t *testing.T) {
	n := trials(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FJORD_CRASH_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("%d trials per kind, seed %d (FJORD_CRASH_SEED to replay)", n, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	kinds := []*kind{pushKind(), mirrorKind(), appKind(), adminKind()}
	var results []result
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := runKind(t, k, n, rng)
			results = append(results, r)
			for _, v := range r.violations {
				t.Error(v)
			}
		})
	}
	t.Run("failover", func(t *testing.T) {
		r := runFailover(t, failoverTrials(t, n), rng)
		results = append(results, r)
		for _, v := range r.violations {
			t.Error(v)
		}
	})

	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\ttrials\tacknowledged\tviolations\tfailover\t")
	total := result{kind: "total"}
	for _, r := range append(results, total) {
		if r.kind == "total" {
			r = total
		} else {
			total.trials += r.trials
			total.acked += r.acked
			total.violations = append(total.violations, r.violations...)
			total.failovers = append(total.failovers, r.failovers...)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", r.kind, r.trials, r.acked, len(r.violations), r.failoverFigure())
	}
	tw.Flush()
	fmt.Printf("kill -9 crash trials (seed %d):\n%s", seed, b.String())
}

func runKind(t *testing.T, k *kind, n int, rng *rand.Rand) result {
	ctx := t.Context()
	s := fjordtest.New(t)
	var extra []string
	if k.name == "app-sync" {
		env := testenv.Shared(t)
		extra = append(extra, "--kubeconfig", env.Kubeconfig())
	}
	if err := s.Start(extra...); err != nil {
		t.Fatal(err)
	}
	k.setup(ctx, t, s)
	r := result{kind: k.name}
	for i := 0; i < n; i++ {
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); k.work(wctx, s) }()
		time.Sleep(time.Duration(rng.Int64N(int64(k.maxDelay-50*time.Millisecond))) + 50*time.Millisecond)
		s.Kill()
		wg.Wait()
		stop()
		r.trials++

		violate := func(format string, args ...any) {
			r.violations = append(r.violations, fmt.Sprintf("%s trial %d: ", k.name, i+1)+fmt.Sprintf(format, args...))
		}
		if err := storage.CheckDB(filepath.Join(s.Data, "fjord.db")); err != nil {
			violate("%v", err)
		}
		if err := s.Start(extra...); err != nil {
			violate("restart: %v", err)
			break
		}
		for _, repo := range k.repos {
			if err := s.Fsck(ctx, repo); err != nil {
				violate("%v", err)
			}
			if err := s.ServedMatchesDisk(ctx, repo, 3*time.Second); err != nil {
				violate("%v", err)
			}
		}
		for _, v := range k.verify(ctx, s) {
			violate("%s", v)
		}
		if len(r.violations) > 20 {
			break // the log says enough
		}
	}
	r.acked = k.acked()
	if len(r.violations) > 0 {
		t.Logf("server log (tail):\n%s", tailLog(s.Log(), 4000))
	}
	return r
}

func tailLog(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// git runs git in a local work tree (no SSH).
func git(ctx context.Context, s *fjordtest.Server, dir string, args ...string) (string, error) {
	return s.Git(ctx, dir, args...)
}

func mustGit(t *testing.T, s *fjordtest.Server, dir string, args ...string) string {
	t.Helper()
	out, err := git(t.Context(), s, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func mustFjord(t *testing.T, s *fjordtest.Server, args ...string) string {
	t.Helper()
	out, err := s.Fjord(args...)
	if err != nil {
		t.Fatalf("fjord %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// pushKind: a CI pushes commit after commit, each to main and to a branch
// of its own. Every push git reported as accepted must be there after the
// restart: its branch at its commit, and main at or after it.
func pushKind() *kind {
	var (
		mu    sync.Mutex
		acked = map[int]string{}
		next  int
		work  string
	)
	k := &kind{name: "push", maxDelay: 1500 * time.Millisecond, repos: []string{"ci"}}
	k.setup = func(ctx context.Context, t *testing.T, s *fjordtest.Server) {
		mustFjord(t, s, "repo", "create", "ci")
		work = filepath.Join(s.Dir, "work")
		mustGit(t, s, "", "clone", "-q", s.URL("ci"), work)
	}
	k.work = func(ctx context.Context, s *fjordtest.Server) {
		for ctx.Err() == nil {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			os.WriteFile(filepath.Join(work, "build.txt"), []byte(fmt.Sprintf("build %d\n", i)), 0o644)
			if _, err := git(ctx, s, work, "commit", "-q", "-a", "--allow-empty", "-m", fmt.Sprintf("build %d", i)); err != nil {
				git(ctx, s, work, "add", ".")
				if _, err := git(ctx, s, work, "commit", "-q", "-m", fmt.Sprintf("build %d", i)); err != nil {
					return
				}
			}
			hash, err := git(ctx, s, work, "rev-parse", "HEAD")
			if err != nil {
				return
			}
			if _, err := git(ctx, s, work, "push", "-q", "origin", "HEAD:main", fmt.Sprintf("HEAD:refs/heads/build-%d", i)); err != nil {
				return
			}
			mu.Lock()
			acked[i] = hash
			mu.Unlock()
		}
	}
	k.verify = func(ctx context.Context, s *fjordtest.Server) []string {
		var v []string
		served, err := s.ServedRefs(ctx, "ci")
		if err != nil {
			return []string{err.Error()}
		}
		have := map[string]string{}
		for _, l := range served {
			hash, name, _ := strings.Cut(l, " ")
			have[name] = hash
		}
		mu.Lock()
		defer mu.Unlock()
		for i, hash := range acked {
			if got := have[fmt.Sprintf("refs/heads/build-%d", i)]; got != hash {
				v = append(v, fmt.Sprintf("acknowledged push %d (%s) lost: branch build-%d is %q", i, hash, i, got))
			}
		}
		// main holds every acknowledged commit.
		var last int = -1
		for i := range acked {
			last = max(last, i)
		}
		if last >= 0 {
			if _, err := git(ctx, s, s.RepoPath("ci"), "merge-base", "--is-ancestor", acked[last], "refs/heads/main"); err != nil {
				v = append(v, fmt.Sprintf("main (%s) does not contain acknowledged push %d (%s)", have["refs/heads/main"], last, acked[last]))
			}
		}
		return v
	}
	k.acked = func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	return k
}

// mirrorKind: an upstream that commits, force-pushes, creates and deletes
// branches, and a sync after each change. After the restart the next sync
// must succeed and leave the mirror serving exactly the upstream's refs.
func mirrorKind() *kind {
	var (
		mu      sync.Mutex
		synced  int
		i       int
		up      string
		upWork  string
		lastErr string
	)
	k := &kind{name: "mirror-sync", maxDelay: 1500 * time.Millisecond, repos: []string{"up"}}
	k.setup = func(ctx context.Context, t *testing.T, s *fjordtest.Server) {
		up = filepath.Join(s.Dir, "upstream.git")
		upWork = filepath.Join(s.Dir, "upwork")
		mustGit(t, s, "", "init", "-q", "--bare", "--initial-branch=main", up)
		mustGit(t, s, "", "init", "-q", "--initial-branch=main", upWork)
		mustGit(t, s, upWork, "commit", "-q", "--allow-empty", "-m", "root")
		mustGit(t, s, upWork, "push", "-q", up, "main")
		mustFjord(t, s, "mirror", "add", "up", "--upstream", "file://"+up, "--interval", "1h")
	}
	k.work = func(ctx context.Context, s *fjordtest.Server) {
		for ctx.Err() == nil {
			i++
			os.WriteFile(filepath.Join(upWork, "f.txt"), []byte(fmt.Sprintf("change %d\n", i)), 0o644)
			git(ctx, s, upWork, "add", ".")
			args := []string{"commit", "-q", "-m", fmt.Sprintf("change %d", i)}
			if i%4 == 0 {
				args = append(args, "--amend") // upstream rewrites history
			}
			if _, err := git(ctx, s, upWork, args...); err != nil {
				return
			}
			push := []string{"push", "-q", "-f", up, "main", fmt.Sprintf("main:refs/heads/topic-%d", i)}
			if i > 2 {
				push = append(push, fmt.Sprintf(":refs/heads/topic-%d", i-2))
			}
			if _, err := git(ctx, s, upWork, push...); err != nil {
				return
			}
			if out, err := s.FjordContext(ctx, "mirror", "sync", "up"); err != nil {
				mu.Lock()
				lastErr = out
				mu.Unlock()
				return
			}
			mu.Lock()
			synced++
			mu.Unlock()
		}
	}
	k.verify = func(ctx context.Context, s *fjordtest.Server) []string {
		if out, err := s.Fjord("mirror", "sync", "up"); err != nil {
			return []string{fmt.Sprintf("first sync after restart failed: %v: %s", err, out)}
		}
		want, err := s.LsRemote(ctx, "file://"+up)
		if err != nil {
			return []string{err.Error()}
		}
		got, err := s.ServedRefs(ctx, "up")
		if err != nil {
			return []string{err.Error()}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			return []string{fmt.Sprintf("after the next sync the mirror serves\n%v\nbut upstream has\n%v", got, want)}
		}
		return nil
	}
	k.acked = func() int { mu.Lock(); defer mu.Unlock(); _ = lastErr; return synced }
	return k
}

// appKind: a GitOps repo whose commits each add one ConfigMap and remove
// another, each pushed and synced with prune. After the restart the next
// sync must leave the cluster holding exactly the ConfigMaps of the
// repo's main, and the app synced to it.
func appKind() *kind {
	var (
		mu     sync.Mutex
		synced int
		i      int
		work   string
		ns     string
		env    *testenv.Env
	)
	k := &kind{name: "app-sync", maxDelay: 2500 * time.Millisecond, repos: []string{"gitops"}}
	k.setup = func(ctx context.Context, t *testing.T, s *fjordtest.Server) {
		env = testenv.Shared(t)
		ns = env.Namespace(t)
		mustFjord(t, s, "repo", "create", "gitops")
		work = filepath.Join(s.Dir, "gitops")
		mustGit(t, s, "", "clone", "-q", s.URL("gitops"), work)
		writeConfigMaps(work, 0)
		mustGit(t, s, work, "add", "-A")
		mustGit(t, s, work, "commit", "-q", "-m", "seed")
		mustGit(t, s, work, "push", "-q", "origin", "HEAD:main")
		app := filepath.Join(s.Dir, "app.yaml")
		os.WriteFile(app, []byte(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: crash
  namespace: argocd
spec:
  project: default
  source:
    repoURL: `+s.URL("gitops")+`
    targetRevision: main
    path: cm
  destination:
    server: https://kubernetes.default.svc
    namespace: `+ns+`
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
`), 0o644)
		mustFjord(t, s, "app", "apply", "-f", app)
	}
	k.work = func(ctx context.Context, s *fjordtest.Server) {
		for ctx.Err() == nil {
			i++
			writeConfigMaps(work, i)
			git(ctx, s, work, "add", "-A")
			if _, err := git(ctx, s, work, "commit", "-q", "-m", fmt.Sprintf("release %d", i)); err != nil {
				return
			}
			if _, err := git(ctx, s, work, "push", "-q", "origin", "HEAD:main"); err != nil {
				return
			}
			if _, err := s.FjordContext(ctx, "app", "sync", "crash", "--prune"); err != nil {
				return
			}
			mu.Lock()
			synced++
			mu.Unlock()
		}
	}
	k.verify = func(ctx context.Context, s *fjordtest.Server) []string {
		if out, err := s.Fjord("app", "sync", "crash", "--prune"); err != nil {
			return []string{fmt.Sprintf("first app sync after restart failed: %v: %s", err, out)}
		}
		var v []string
		head, err := git(ctx, s, s.RepoPath("gitops"), "rev-parse", "refs/heads/main")
		if err != nil {
			return []string{err.Error()}
		}
		files, err := git(ctx, s, s.RepoPath("gitops"), "ls-tree", "--name-only", "refs/heads/main", "cm/")
		if err != nil {
			return []string{err.Error()}
		}
		var want []string
		for _, f := range strings.Fields(files) {
			want = append(want, strings.TrimSuffix(filepath.Base(f), ".yaml"))
		}
		sort.Strings(want)
		got, err := configMapNames(ctx, env, ns)
		if err != nil {
			return []string{err.Error()}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			v = append(v, fmt.Sprintf("after the next sync with prune the cluster holds %v, main (%s) has %v", got, head, want))
		}
		out, err := s.Fjord("app", "list", "-o", "json")
		if err != nil {
			return append(v, fmt.Sprintf("app list: %v: %s", err, out))
		}
		var apps []storage.App
		if err := json.Unmarshal([]byte(out), &apps); err != nil || len(apps) != 1 {
			return append(v, fmt.Sprintf("app list: %v: %s", err, out))
		}
		if apps[0].Status.SyncedCommit != head {
			v = append(v, fmt.Sprintf("app synced commit %s, main is %s", apps[0].Status.SyncedCommit, head))
		}
		return v
	}
	k.acked = func() int { mu.Lock(); defer mu.Unlock(); return synced }
	return k
}

// writeConfigMaps makes cm/ hold release-i .. release-(i+2): each release
// adds one ConfigMap and removes the oldest.
func writeConfigMaps(work string, i int) {
	dir := filepath.Join(work, "cm")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	for j := i; j < i+3; j++ {
		name := fmt.Sprintf("release-%d", j)
		os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(fmt.Sprintf(
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  release: %q\n", name, strconv.Itoa(i))), 0o644)
	}
}

// configMapNames lists the ConfigMaps of a namespace on the API server.
func configMapNames(ctx context.Context, env *testenv.Env, ns string) ([]string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.URL()+"/api/v1/namespaces/"+ns+"/configmaps", nil)
	resp, err := env.HTTPClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("list configmaps in %s: %w", ns, err)
	}
	var names []string
	for _, it := range list.Items {
		// fjord keeps a copy of the app's inventory in the namespace.
		if it.Metadata.Name != "kube-root-ca.crt" && !strings.HasPrefix(it.Metadata.Name, "fjord-inventory.") {
			names = append(names, it.Metadata.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// adminKind: users, repos and grants created and deleted through the
// admin API. After the restart every acknowledged write holds (the one in
// flight at the kill may or may not have happened, and is then whatever
// the server says), and the repos on disk are exactly the repos in the
// database.
func adminKind() *kind {
	type op struct {
		verb, noun, name string
	}
	var (
		mu     sync.Mutex
		acked  int
		i      int
		users  = map[string]bool{} // expected state
		repos  = map[string]bool{}
		grants = map[string]bool{} // user "/" repo
		unsure = map[string]bool{} // names touched by the op in flight at the kill
	)
	k := &kind{name: "admin-write", maxDelay: 1500 * time.Millisecond}
	k.setup = func(ctx context.Context, t *testing.T, s *fjordtest.Server) {
		users["admin"] = true
	}
	apply := func(o op) {
		switch o.verb + " " + o.noun {
		case "add user":
			users[o.name] = true
		case "delete user":
			delete(users, o.name)
			for g := range grants {
				if strings.HasPrefix(g, o.name+"/") {
					delete(grants, g)
				}
			}
		case "create repo":
			repos[o.name] = true
		case "delete repo":
			delete(repos, o.name)
			for g := range grants {
				if strings.HasSuffix(g, "/"+o.name) {
					delete(grants, g)
				}
			}
		case "grant write":
			grants[o.name] = true
		}
	}
	k.work = func(ctx context.Context, s *fjordtest.Server) {
		for ctx.Err() == nil {
			i++
			u, r := fmt.Sprintf("u%d", i), fmt.Sprintf("r%d", i)
			key, err := fjordtest.WriteKey(filepath.Join(s.Home, "key-"+u))
			if err != nil {
				return
			}
			ops := []struct {
				o    op
				args []string
			}{
				{op{"add", "user", u}, []string{"user", "add", u, "--key", key + ".pub"}},
				{op{"create", "repo", r}, []string{"repo", "create", r}},
				{op{"grant", "write", u + "/" + r}, []string{"grant", u, r, "write"}},
			}
			if i%2 == 0 {
				pu, pr := fmt.Sprintf("u%d", i-1), fmt.Sprintf("r%d", i-1)
				ops = append(ops,
					struct {
						o    op
						args []string
					}{op{"delete", "repo", pr}, []string{"repo", "delete", pr}},
					struct {
						o    op
						args []string
					}{op{"delete", "user", pu}, []string{"user", "delete", pu}})
			}
			for _, o := range ops {
				if _, err := s.FjordContext(ctx, o.args...); err != nil {
					mu.Lock()
					for _, n := range strings.Split(o.o.name, "/") {
						unsure[n] = true
					}
					mu.Unlock()
					return
				}
				mu.Lock()
				apply(o.o)
				acked++
				mu.Unlock()
			}
		}
	}
	k.verify = func(ctx context.Context, s *fjordtest.Server) []string {
		mu.Lock()
		defer mu.Unlock()
		var v []string
		gotUsers, gotRepos, gotGrants, err := adminState(s)
		if err != nil {
			return []string{err.Error()}
		}
		// The op in flight resolves to what the server holds.
		for n := range unsure {
			delete(users, n)
			delete(repos, n)
			if gotUsers[n] {
				users[n] = true
			}
			if gotRepos[n] {
				repos[n] = true
			}
			for g := range gotGrants {
				if strings.HasPrefix(g, n+"/") || strings.HasSuffix(g, "/"+n) {
					grants[g] = true
				}
			}
			for g := range grants {
				if (strings.HasPrefix(g, n+"/") || strings.HasSuffix(g, "/"+n)) && !gotGrants[g] {
					delete(grants, g)
				}
			}
		}
		clear(unsure)
		for _, c := range []struct {
			what      string
			want, got map[string]bool
		}{{"users", users, gotUsers}, {"repos", repos, gotRepos}, {"grants", grants, gotGrants}} {
			if missing, extra := diff(c.want, c.got); len(missing)+len(extra) > 0 {
				v = append(v, fmt.Sprintf("%s: acknowledged but missing %v, present but never acknowledged %v", c.what, missing, extra))
			}
		}
		onDisk, _ := filepath.Glob(filepath.Join(s.Data, "repos", "*.git"))
		disk := map[string]bool{}
		for _, p := range onDisk {
			disk[strings.TrimSuffix(filepath.Base(p), ".git")] = true
		}
		if missing, extra := diff(gotRepos, disk); len(missing)+len(extra) > 0 {
			v = append(v, fmt.Sprintf("repos in the database without a directory %v, directories without a repo %v", missing, extra))
		}
		// Resync the model with the server, so one violation is reported once.
		users, repos, grants = gotUsers, gotRepos, gotGrants
		return v
	}
	k.acked = func() int { mu.Lock(); defer mu.Unlock(); return acked }
	return k
}

func diff(want, got map[string]bool) (missing, extra []string) {
	for n := range want {
		if !got[n] {
			missing = append(missing, n)
		}
	}
	for n := range got {
		if !want[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// adminState reads users, repos and grants through the CLI.
func adminState(s *fjordtest.Server) (users, repos, grants map[string]bool, err error) {
	users, repos, grants = map[string]bool{}, map[string]bool{}, map[string]bool{}
	var us []storage.User
	var rs []storage.Repo
	var gs []storage.Grant
	for _, q := range []struct {
		args []string
		v    any
	}{{[]string{"user", "list", "-o", "json"}, &us}, {[]string{"repo", "list", "-o", "json"}, &rs}, {[]string{"grant", "list", "-o", "json"}, &gs}} {
		out, err := s.Fjord(q.args...)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("fjord %s: %v: %s", strings.Join(q.args, " "), err, out)
		}
		if err := json.Unmarshal([]byte(out), q.v); err != nil {
			return nil, nil, nil, fmt.Errorf("fjord %s: %v: %s", strings.Join(q.args, " "), err, out)
		}
	}
	for _, u := range us {
		users[u.Name] = true
	}
	for _, r := range rs {
		repos[r.Name] = true
	}
	for _, g := range gs {
		grants[g.User+"/"+g.Repo] = true
	}
	return users, repos, grants, nil
}
