package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Names of the Git workloads, in run order.
const (
	GitLsRemote = "ls-remote"
	GitFetch    = "fetch-one-commit"
	GitClone    = "clone"
	GitShallow  = "clone-depth-1"
)

// GitWorkloadNames returns the names of the Git workloads in run order.
func GitWorkloadNames() []string {
	return []string{GitLsRemote, GitFetch, GitClone, GitShallow}
}

// GitOptions configures a Git run. Only URL is required; every other zero
// value picks the default its comment names.
type GitOptions struct {
	// URL is the repository to measure: ssh://, https://, git://,
	// file:// or scp-style user@host:path. The run only reads from it.
	URL string

	// Concurrency is how many clients run each workload at once. Zero
	// means 1.
	Concurrency int

	// Duration is how long each workload is measured, after its warmup.
	// Zero means 10s.
	Duration time.Duration

	// Warmup is how long each workload runs before samples count. Zero
	// means a tenth of Duration, at most one second; negative means none.
	Warmup time.Duration

	// Workloads selects workloads by name. Nil means all of them.
	Workloads []string

	// SSHKey is a private key file for ssh URLs, used alone
	// (IdentitiesOnly). Empty means ssh's own configuration.
	SSHKey string

	// KnownHosts is a known_hosts file for ssh URLs, checked strictly:
	// a host key missing from it fails the run, it is never added on
	// first use. Empty means ssh's own configuration.
	KnownHosts string

	// Git is the git binary. Empty means "git" from PATH.
	Git string

	// WorkDir is where clones are made; a fresh directory is created in
	// it and removed afterwards. Empty means the system temp directory.
	WorkDir string

	// Progress, if set, receives progress reports. It is called from one
	// goroutine at a time.
	Progress func(Progress)
}

// GitSchema names the version of the GitReport JSON layout, with the same
// stability rules as DiskSchema.
const GitSchema = "fjord.bench.git/v1"

// GitReport is the outcome of a Git run. Durations are integer nanoseconds.
type GitReport struct {
	Schema  string    `json:"schema"`
	Started time.Time `json:"started"`
	// URL is the repository measured, with any password removed.
	URL         string        `json:"url"`
	GitVersion  string        `json:"git_version"`
	Concurrency int           `json:"concurrency"`
	Duration    time.Duration `json:"duration_ns"`
	Warmup      time.Duration `json:"warmup_ns"`
	// Branch and Head are the default branch and its commit when the
	// run started.
	Branch string `json:"branch"`
	Head   string `json:"head"`
	// Repo is the size of the repository measured, as a full clone
	// received it before the workloads ran.
	Repo RepoSize `json:"repo"`
	// ClientStart is the median time to start and exit the client
	// processes alone (git --version, and ssh -V for ssh URLs), with no
	// server involved: the floor under every figure, which the
	// in-process "anything new?" benchmark of make bench does not pay.
	ClientStart time.Duration `json:"client_start_p50_ns"`
	Workloads   []GitResult   `json:"workloads"`
	// Verdicts judges the results against the clients' timeouts and
	// fjord's goals.
	Verdicts []Verdict `json:"verdicts"`
	Notes    []string  `json:"notes"`
}

// RepoSize is the size of a repository as a full bare clone holds it.
type RepoSize struct {
	// Commits counts the commits reachable from every ref, Refs the refs
	// the server advertises.
	Commits int64 `json:"commits"`
	Refs    int64 `json:"refs"`
	// Objects counts the objects of the clone, Bytes their size on disk
	// (packed and compressed, as they travel).
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// GitResult is what one Git workload measured.
type GitResult struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	// Command is the git command line measured, with the URL redacted.
	Command string `json:"command"`
	// Measures says what one latency sample spans: a whole git command,
	// client process start and a new connection included.
	Measures string `json:"measures"`
	// Ops counts the operations that succeeded after the warmup, Errors
	// those that failed; FirstError is the first failure's message.
	Ops        int64  `json:"ops"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// OpsPerSec is the completed operations per second of all clients
	// together, over the measured window. It includes the clients' own
	// untimed work between operations (making and removing clones), so
	// it is a floor on what the server sustains.
	OpsPerSec float64       `json:"ops_per_s"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	// Bytes is what the clients received: the packs or objects written
	// by clone and fetch, the advertisement printed by ls-remote.
	Bytes   int64   `json:"bytes"`
	MBps    float64 `json:"mb_per_s"`
	Latency Latency `json:"latency"`
}

// gitRun is the state of one RunGit call.
type gitRun struct {
	opts     GitOptions
	env      []string
	work     string
	url      string // redacted, for messages
	n, total int
	seq      atomic.Int64
}

// RunGit measures a Git server with the real git client: ref advertisement,
// an incremental fetch of one commit, and full and shallow clones, each for
// opts.Duration with opts.Concurrency clients, after one untimed full clone
// that sizes the repository. It never writes to the server.
func RunGit(ctx context.Context, opts GitOptions) (*GitReport, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(o.Git); err != nil {
		return nil, fmt.Errorf("bench: %s not found: install git: %w", o.Git, err)
	}
	work, err := os.MkdirTemp(o.WorkDir, "fjord-bench-git-")
	if err != nil {
		return nil, fmt.Errorf("bench: create work directory in %s: %w", o.WorkDir, err)
	}
	// Everything under work was created by this run, by git on its
	// behalf, so removing the tree removes nothing of anyone else's.
	defer os.RemoveAll(work)

	r := &gitRun{opts: o, env: gitEnv(o), work: work, url: redactURL(o.URL), total: len(o.Workloads)}
	rep := &GitReport{
		Schema:      GitSchema,
		Started:     time.Now().UTC().Truncate(time.Second),
		URL:         r.url,
		Concurrency: o.Concurrency,
		Duration:    o.Duration,
		Warmup:      o.Warmup,
	}
	if out, err := r.git(ctx, "", "--version"); err == nil {
		rep.GitVersion = strings.TrimSpace(string(out))
	}
	rep.Branch, rep.Head, err = r.defaultBranch(ctx)
	if err != nil {
		return nil, err
	}
	r.say("repository", "measuring its size with one full clone")
	seed, err := r.seedClone(ctx)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(seed)
	if rep.Repo, err = r.repoSize(ctx, seed); err != nil {
		return nil, err
	}
	r.say("client start", "timing the client processes alone")
	if rep.ClientStart, err = r.clientStart(ctx); err != nil {
		return nil, err
	}

	for _, name := range GitWorkloadNames() {
		if !slices.Contains(o.Workloads, name) {
			continue
		}
		r.n++
		res, note, err := r.workload(ctx, name, rep.Branch, seed)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		if note != "" {
			rep.Notes = append(rep.Notes, note)
			continue
		}
		rep.Workloads = append(rep.Workloads, res)
		if res.Errors > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %d of %d operations failed; the first: %s",
				name, res.Errors, res.Errors+res.Ops, res.FirstError))
		}
	}
	rep.Verdicts = JudgeGit(rep)
	return rep, nil
}

// clientStartRuns is how many times clientStart starts the clients.
const clientStartRuns = 20

// clientStart returns the median time to start and exit git, plus ssh for
// ssh URLs, with no server involved.
func (r *gitRun) clientStart(ctx context.Context) (time.Duration, error) {
	h := NewHistogram()
	ssh := isSSH(r.opts.URL)
	for range clientStartRuns {
		t0 := time.Now()
		if _, err := r.git(ctx, "", "--version"); err != nil {
			return 0, err
		}
		if ssh {
			cmd := exec.CommandContext(ctx, "ssh", "-V")
			cmd.WaitDelay = 5 * time.Second
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("bench: ssh -V: %w: %s", err, strings.TrimSpace(string(out)))
			}
		}
		h.Record(time.Since(t0))
	}
	return h.Percentile(50), nil
}

// isSSH reports whether git reaches u over ssh: ssh:// and git+ssh://
// URLs, and the scp-like user@host:path form.
func isSSH(u string) bool {
	if i := strings.Index(u, "://"); i >= 0 {
		return strings.Contains(u[:i], "ssh")
	}
	colon := strings.Index(u, ":")
	return colon > 0 && !strings.Contains(u[:colon], "/")
}

// measures says what one sample of a workload against u spans.
func measures(u string) string {
	const whole = "one git command, start to exit: starting git"
	switch {
	case isSSH(u):
		return whole + " and ssh, a new SSH connection with its key exchange and login, then the Git protocol"
	case strings.HasPrefix(u, "https://"), strings.HasPrefix(u, "http://"):
		return whole + " and git-remote-http, a new HTTP connection (TLS for https), then the Git protocol"
	case strings.HasPrefix(u, "git://"):
		return whole + ", a new TCP connection, then the Git protocol"
	default:
		return whole + " and git-upload-pack on this machine, then the Git protocol"
	}
}

// seedClone makes one full bare clone of the repository, untimed: the
// figure for the repository's size and the source of the incremental
// fetch's base.
func (r *gitRun) seedClone(ctx context.Context) (string, error) {
	seed := r.dir("seed")
	if _, err := r.git(ctx, "", "clone", "--bare", "--quiet", "--no-local", r.opts.URL, seed); err != nil {
		return "", fmt.Errorf("bench: clone %s: %w", r.url, err)
	}
	return seed, nil
}

// repoSize counts the commits, refs and objects of the clone at seed and
// the bytes its objects take.
func (r *gitRun) repoSize(ctx context.Context, seed string) (RepoSize, error) {
	var z RepoSize
	count := func(args ...string) (int64, error) {
		out, err := r.git(ctx, seed, args...)
		if err != nil {
			return 0, err
		}
		return int64(len(strings.Fields(string(out)))), nil
	}
	var err error
	if z.Commits, err = count("rev-list", "--all"); err != nil {
		return z, err
	}
	if z.Refs, err = count("for-each-ref", "--format=x"); err != nil {
		return z, err
	}
	if z.Objects, err = count("cat-file", "--batch-all-objects", "--batch-check=x"); err != nil {
		return z, err
	}
	z.Bytes = treeSize(filepath.Join(seed, "objects"))
	return z, nil
}

// withDefaults returns o with zero values replaced and checks the rest.
func (o GitOptions) withDefaults() (GitOptions, error) {
	if o.URL == "" {
		return o, errors.New("bench: no Git URL given: name the repository to measure")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Duration <= 0 {
		o.Duration = defaultDuration
	}
	switch {
	case o.Warmup == 0:
		o.Warmup = min(o.Duration/10, maxDefaultWarmup)
	case o.Warmup < 0:
		o.Warmup = 0
	}
	if o.Git == "" {
		o.Git = "git"
	}
	if o.WorkDir == "" {
		o.WorkDir = os.TempDir()
	}
	if o.SSHKey != "" {
		if _, err := os.Stat(o.SSHKey); err != nil {
			return o, fmt.Errorf("bench: ssh key: %w: name the private key the server knows, such as --ssh-key ~/.ssh/id_ed25519", err)
		}
	}
	if o.KnownHosts != "" {
		if _, err := os.Stat(o.KnownHosts); err != nil {
			return o, fmt.Errorf("bench: known_hosts file: %w: write the server's host key line to it first (on a fjord server: fjord hostkey > FILE)", err)
		}
	}
	all := GitWorkloadNames()
	for _, w := range o.Workloads {
		if !slices.Contains(all, w) {
			return o, fmt.Errorf("bench: unknown Git workload %q: choose from %s", w, strings.Join(all, ", "))
		}
	}
	if o.Workloads == nil {
		o.Workloads = all
	}
	return o, nil
}

// gitEnv returns the environment for git: no prompts, and the key and
// known_hosts file for ssh when given. They are added to the caller's own
// GIT_SSH_COMMAND when one is set, so a wrapper or extra options survive.
func gitEnv(o GitOptions) []string {
	env := append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS=")
	base := "ssh"
	if c := strings.TrimSpace(os.Getenv("GIT_SSH_COMMAND")); c != "" {
		base = c
	}
	var ssh []string
	if o.SSHKey != "" {
		ssh = append(ssh, "-i", shellQuote(o.SSHKey), "-o", "IdentitiesOnly=yes")
	}
	if o.KnownHosts != "" {
		ssh = append(ssh, "-o", "UserKnownHostsFile="+shellQuote(o.KnownHosts), "-o", "StrictHostKeyChecking=yes")
	}
	if len(ssh) > 0 {
		env = append(env, "GIT_SSH_COMMAND="+base+" -o BatchMode=yes "+strings.Join(ssh, " "))
	}
	return env
}

// shellQuote quotes s for the shell git runs GIT_SSH_COMMAND with.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// redactURL removes a password from u, which must never reach a report or
// a log.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	return p.Redacted()
}

// git runs git with args in dir (or the current directory when empty) and
// returns its standard output. The error names the command with the URL
// redacted and ends with git's last line of complaint, plus a hint when the
// failure is a common one.
func (r *gitRun) git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.opts.Git, args...)
	cmd.Dir = dir
	cmd.Env = r.env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctxErr(ctx)
		}
		msg := complaint(stderr.String())
		line := strings.ReplaceAll(strings.Join(args, " "), r.opts.URL, r.url)
		return nil, fmt.Errorf("git %s: %w: %s%s", line, err, strings.ReplaceAll(msg, r.opts.URL, r.url), gitHint(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// gitHint suggests a fix for the failures an operator meets first.
func gitHint(stderr string) string {
	switch {
	case strings.Contains(stderr, "Host key verification failed"):
		return " (ssh does not know the server's host key: get its known_hosts line from the server's operator, on a fjord server `fjord hostkey > FILE`, check the fingerprint, and pass --known-hosts FILE)"
	case strings.Contains(stderr, "Permission denied"):
		return " (the server refused the key: pass the right one with --ssh-key)"
	case strings.Contains(stderr, "Could not resolve host"), strings.Contains(stderr, "Connection refused"),
		strings.Contains(stderr, "Couldn't connect to server"):
		return " (check the host and port in --url)"
	}
	return ""
}

// complaint returns the lines of git's stderr that say what went wrong,
// joined on one line: its last three, once git's boilerplate after a failed
// connection ("Could not read from remote repository. Please make sure you
// have the correct access rights and the repository exists.") is dropped, so
// ssh's own reason ("Host key verification failed.") shows whole.
func complaint(stderr string) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		switch l {
		case "", "fatal: Could not read from remote repository.",
			"Please make sure you have the correct access rights", "and the repository exists.":
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return strings.TrimSpace(stderr)
	}
	return strings.Join(lines[max(len(lines)-3, 0):], " ")
}

// defaultBranch asks the server for HEAD's branch and commit.
func (r *gitRun) defaultBranch(ctx context.Context) (branch, head string, err error) {
	out, err := r.git(ctx, "", "ls-remote", "--symref", r.opts.URL, "HEAD")
	if err != nil {
		return "", "", fmt.Errorf("bench: reach %s: %w", r.url, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 3 && fields[0] == "ref:" && fields[2] == "HEAD":
			branch = strings.TrimPrefix(fields[1], "refs/heads/")
		case len(fields) == 2 && fields[1] == "HEAD":
			head = fields[0]
		}
	}
	if branch == "" || head == "" {
		return "", "", fmt.Errorf("bench: %s advertises no HEAD branch: is the repository empty?", r.url)
	}
	return branch, head, nil
}

// dir returns a fresh path under the work directory for one operation.
func (r *gitRun) dir(prefix string) string {
	return filepath.Join(r.work, fmt.Sprintf("%s-%d", prefix, r.seq.Add(1)))
}

// workload runs one Git workload. A workload the repository cannot support
// returns a note instead of a result.
func (r *gitRun) workload(ctx context.Context, name, branch, seed string) (GitResult, string, error) {
	var (
		title string
		args  []string
		mk    func() op
	)
	u := r.opts.URL
	switch name {
	case GitLsRemote:
		title, args = "ref advertisement", []string{"ls-remote", u}
		mk = func() op {
			return func(ctx context.Context) (time.Duration, int64, error) {
				t0 := time.Now()
				out, err := r.git(ctx, "", args...)
				return time.Since(t0), int64(len(out)), err
			}
		}
	case GitClone, GitShallow:
		title, args = "full bare clone", []string{"clone", "--bare", "--quiet", "--no-local", u}
		if name == GitShallow {
			title, args = "shallow bare clone", []string{"clone", "--bare", "--quiet", "--no-local", "--depth", "1", u}
		}
		mk = func() op { return r.cloneOp(args) }
	case GitFetch:
		title = "fetch the newest commit into a clone of its parent"
		base, parent, err := r.fetchBase(ctx, branch, seed)
		if err != nil {
			return GitResult{}, "", err
		}
		if base == "" {
			return GitResult{}, fmt.Sprintf("%s: skipped, the default branch %s has a single commit", name, branch), nil
		}
		ref := "+refs/heads/" + branch + ":refs/heads/" + branch
		args = []string{"fetch", "--quiet", "--no-tags", u, ref}
		mk = func() op { return r.fetchOp(base, branch, parent, args) }
	}
	ops := make([]op, r.opts.Concurrency)
	for i := range ops {
		ops[i] = mk()
	}
	p := phase{
		step:     Progress{Step: name, N: r.n, Total: r.total},
		warmup:   r.opts.Warmup,
		duration: r.opts.Duration,
		ops:      ops,
		tolerate: true,
		progress: r.opts.Progress,
	}
	m, err := p.run(ctx)
	if err != nil {
		return GitResult{}, "", err
	}
	res := GitResult{
		Name: name, Title: title,
		Command:   "git " + strings.ReplaceAll(strings.Join(args, " "), u, r.url),
		Measures:  measures(u),
		Ops:       m.ops,
		Errors:    m.errors,
		OpsPerSec: m.rate(m.ops),
		Elapsed:   m.elapsed,
		Bytes:     m.bytes,
		MBps:      m.rate(m.bytes) / 1e6,
		Latency:   m.hist.Summary(),
	}
	if m.firstErr != nil {
		res.FirstError = m.firstErr.Error()
	}
	return res, "", nil
}

// cloneOp returns an op that clones into a fresh directory, counts the
// bytes of the objects received, and removes the clone untimed.
func (r *gitRun) cloneOp(args []string) op {
	return func(ctx context.Context) (time.Duration, int64, error) {
		dest := r.dir("clone")
		defer os.RemoveAll(dest)
		t0 := time.Now()
		_, err := r.git(ctx, "", append(slices.Clip(args), dest)...)
		lat := time.Since(t0)
		if err != nil {
			return 0, 0, err
		}
		return lat, treeSize(filepath.Join(dest, "objects")), nil
	}
}

// fetchBase prepares the repository incremental fetches start from: a bare
// repository holding exactly the objects reachable from the parent of the
// default branch's head. It returns "" when the branch has one commit.
//
// Nothing is pushed to the server. The base is cloned from a copy of seed,
// the run's full clone, whose branch was moved back one commit, through the
// Git protocol (--no-local), so it lacks the head's objects: a fetch must
// negotiate and transfer them, as a CI runner's fetch does after one push.
func (r *gitRun) fetchBase(ctx context.Context, branch, seed string) (base, parent string, err error) {
	r.say(GitFetch, "preparing a clone one commit behind")
	behind := r.dir("behind")
	if _, err := r.git(ctx, "", "clone", "--bare", "--quiet", "--single-branch", "--no-tags", "--branch", branch, seed, behind); err != nil {
		return "", "", err
	}
	defer os.RemoveAll(behind)
	out, err := r.git(ctx, behind, "rev-parse", "--verify", "--quiet", "HEAD~1")
	if err != nil {
		return "", "", nil // no parent
	}
	parent = strings.TrimSpace(string(out))
	if _, err := r.git(ctx, behind, "update-ref", "refs/heads/"+branch, parent); err != nil {
		return "", "", err
	}
	base = r.dir("base")
	if _, err := r.git(ctx, "", "clone", "--bare", "--quiet", "--no-local", "--single-branch", "--no-tags", "file://"+behind, base); err != nil {
		return "", "", err
	}
	return base, parent, nil
}

// fetchOp returns an op that makes a fresh repository borrowing base's
// objects (git's alternates) with the branch at parent, then times a fetch
// of the branch from the server. Only the new commit's objects travel.
func (r *gitRun) fetchOp(base, branch, parent string, args []string) op {
	return func(ctx context.Context) (time.Duration, int64, error) {
		dir := r.dir("fetch")
		defer os.RemoveAll(dir)
		if _, err := r.git(ctx, "", "init", "--bare", "--quiet", dir); err != nil {
			return 0, 0, err
		}
		alt := filepath.Join(dir, "objects", "info", "alternates")
		if err := os.WriteFile(alt, []byte(filepath.Join(base, "objects")+"\n"), 0o644); err != nil {
			return 0, 0, fmt.Errorf("bench: write %s: %w", alt, err)
		}
		refFile := filepath.Join(dir, "refs", "heads", branch)
		if err := os.MkdirAll(filepath.Dir(refFile), 0o755); err != nil {
			return 0, 0, fmt.Errorf("bench: %w", err)
		}
		if err := os.WriteFile(refFile, []byte(parent+"\n"), 0o644); err != nil {
			return 0, 0, fmt.Errorf("bench: write %s: %w", refFile, err)
		}
		before := treeSize(filepath.Join(dir, "objects"))
		t0 := time.Now()
		_, err := r.git(ctx, dir, args...)
		lat := time.Since(t0)
		if err != nil {
			return 0, 0, err
		}
		return lat, treeSize(filepath.Join(dir, "objects")) - before, nil
	}
}

// say reports progress that has no operation count.
func (r *gitRun) say(step, detail string) {
	if r.opts.Progress != nil {
		r.opts.Progress(Progress{Step: step, N: r.n, Total: r.total, Detail: detail})
	}
}

// treeSize returns the bytes of the regular files under dir.
func treeSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a vanished file counts as nothing
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
