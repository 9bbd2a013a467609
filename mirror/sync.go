package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fjordhq/fjord/internal/gitrun"
	"github.com/fjordhq/fjord/storage"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Hidden ref namespaces of a mirror (under storage.HiddenRefPrefix, so
// never advertised to clients).
const (
	incomingPrefix = storage.HiddenRefPrefix + "incoming/"
	backupPrefix   = storage.HiddenRefPrefix + "backup/"
)

// upstreamRefs are the branches and tags of an upstream, and where its
// HEAD points.
type upstreamRefs struct {
	refs map[string]string // refs/heads/* and refs/tags/* -> object id
	head string            // symref target of HEAD, if known
}

// listUpstream asks the upstream for its refs in-process (go-git), so the
// common "nothing changed" check forks no process.
func listUpstream(ctx context.Context, up Upstream, creds credentials) (upstreamRefs, error) {
	out := upstreamRefs{refs: map[string]string{}}
	var refs []*plumbing.Reference
	if up.Scheme == "file" {
		r, err := git.PlainOpen(up.Path)
		if err != nil {
			return out, fmt.Errorf("open %s: %w", up.Path, err)
		}
		iter, err := r.Storer.IterReferences()
		if err != nil {
			return out, err
		}
		iter.ForEach(func(ref *plumbing.Reference) error { refs = append(refs, ref); return nil })
		if h, err := r.Storer.Reference(plumbing.HEAD); err == nil {
			refs = append(refs, h)
		}
	} else {
		auth, err := creds.goGitAuth(up)
		if err != nil {
			return out, err
		}
		rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "upstream", URLs: []string{up.URL}})
		refs, err = rem.ListContext(ctx, &git.ListOptions{Auth: auth, Timeout: 30})
		if err != nil {
			return out, err
		}
	}
	for _, ref := range refs {
		name := ref.Name().String()
		switch {
		case name == "HEAD" && ref.Type() == plumbing.SymbolicReference:
			out.head = ref.Target().String()
		case ref.Type() != plumbing.HashReference || strings.HasSuffix(name, "^{}"):
		case strings.HasPrefix(name, "refs/heads/"), strings.HasPrefix(name, "refs/tags/"):
			out.refs[name] = ref.Hash().String()
		}
	}
	return out, nil
}

// localRefs returns the branches and tags of the local snapshot.
func localRefs(snap *storage.Refs) map[string]string {
	m := map[string]string{}
	if snap == nil {
		return m
	}
	for _, r := range snap.Refs {
		if strings.HasPrefix(r.Name, "refs/heads/") || strings.HasPrefix(r.Name, "refs/tags/") {
			m[r.Name] = r.Hash
		}
	}
	return m
}

func sameRefs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// syncResult is what one sync did.
type syncResult struct {
	fetched bool
	changes []storage.RefChange
	events  []storage.MirrorEvent
}

// syncMirror brings a mirror repo up to date with its upstream. Refs move
// only in the final `git update-ref --stdin` transaction — all of one sync
// or none — so a failed or killed sync leaves the previous consistent
// state. Tips that a force-push or deletion upstream would lose are kept
// under refs/fjord/backup/.
func (m *Manager) syncMirror(ctx context.Context, mir storage.Mirror) (syncResult, error) {
	// Housekeeping does not rewrite the repo's packs while a sync runs.
	defer m.store.BeginRepoWrite(mir.Repo)()
	var res syncResult
	up, err := ParseUpstream(mir.Upstream)
	if err != nil {
		return res, err
	}
	creds, err := loadCredentials(m.store.CredentialDir("mirror", mir.Repo))
	if err != nil {
		return res, err
	}
	env, err := creds.gitEnv(up)
	if err != nil {
		return res, err
	}
	snap, _ := m.store.Refs(mir.Repo)
	local := localRefs(snap)

	// The cheap check: same refs upstream as here, nothing to fetch. A
	// listing error is not final: the fetch below gives git's own error.
	listed, listErr := listUpstream(ctx, up, creds)
	if listErr == nil && sameRefs(listed.refs, local) && (listed.head == "" || snap == nil || listed.head == snap.Head) {
		return res, nil
	}
	if listErr != nil {
		m.log.Debug("listing upstream refs in-process failed; fetching with git", "mirror", mir.Repo, "err", creds.redact(listErr.Error()))
	}

	repo := m.store.RepoPath(mir.Repo)
	run := func(stdin string, args ...string) (string, error) {
		return m.runGit(ctx, repo, env, creds, stdin, args...)
	}
	// Leftovers of an interrupted sync.
	if err := clearNamespace(run, incomingPrefix); err != nil {
		return res, err
	}
	res.fetched = true
	if _, err := run("", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", up.URL,
		"+refs/heads/*:"+incomingPrefix+"heads/*", "+refs/tags/*:"+incomingPrefix+"tags/*"); err != nil {
		return res, explainGitError("fetch from", up, err)
	}
	out, err := run("", "for-each-ref", "--format=%(objectname) %(refname)", incomingPrefix)
	if err != nil {
		return res, err
	}
	incoming := map[string]string{} // incoming ref -> oid
	next := map[string]string{}     // real ref -> oid
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		oid, name, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		incoming[name] = oid
		next["refs/"+strings.TrimPrefix(name, incomingPrefix)] = oid
	}
	if len(next) == 0 && len(local) > 0 {
		// An upstream that suddenly has no refs is far more likely broken
		// or replaced than deliberately emptied; keep what we have.
		clearNamespace(run, incomingPrefix)
		return res, fmt.Errorf("upstream %s answered with no branches or tags; keeping the local copy (delete and re-add the mirror if the upstream was really emptied)", up.URL)
	}

	// Plan one transaction.
	now := time.Now().UTC()
	stamp := strconv.FormatInt(now.UnixNano(), 10)
	var tx strings.Builder
	names := make([]string, 0, len(next)+len(local))
	for n := range next {
		names = append(names, n)
	}
	for n := range local {
		if _, ok := next[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		oldID, newID := local[name], next[name]
		switch {
		case oldID == newID:
			continue
		case oldID == "":
			fmt.Fprintf(&tx, "create %s %s\n", name, newID)
			continue
		}
		kind := ""
		if newID == "" {
			kind = "delete"
		} else if strings.HasPrefix(name, "refs/tags/") {
			kind = "force-push" // a tag that moves loses its old target
		} else if _, err := run("", "merge-base", "--is-ancestor", oldID, newID); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				return res, err
			}
			kind = "force-push"
		}
		if kind != "" {
			backup := backupPrefix + stamp + "/" + name
			fmt.Fprintf(&tx, "create %s %s\n", backup, oldID)
			res.events = append(res.events, storage.MirrorEvent{Time: now, Ref: name, Kind: kind, Old: oldID, New: newID, BackupRef: backup})
		}
		if newID == "" {
			fmt.Fprintf(&tx, "delete %s %s\n", name, oldID)
		} else {
			fmt.Fprintf(&tx, "update %s %s %s\n", name, newID, oldID)
		}
	}
	for name, oid := range incoming {
		fmt.Fprintf(&tx, "delete %s %s\n", name, oid)
	}
	if _, err := run(tx.String(), "update-ref", "--stdin"); err != nil {
		return res, fmt.Errorf("apply ref updates: %w", err)
	}
	if listed.head != "" && (snap == nil || listed.head != snap.Head) {
		if _, ok := next[listed.head]; ok {
			if _, err := run("", "symbolic-ref", "HEAD", listed.head); err != nil {
				return res, err
			}
		}
	}
	res.changes, err = m.store.RefreshRefs(ctx, mir.Repo)
	return res, err
}

// clearNamespace deletes every ref under prefix in one transaction.
func clearNamespace(run func(string, ...string) (string, error), prefix string) error {
	out, err := run("", "for-each-ref", "--format=delete %(refname) %(objectname)", prefix)
	if err != nil || strings.TrimSpace(out) == "" {
		return err
	}
	_, err = run(out, "update-ref", "--stdin")
	return err
}

// runGit runs git in dir with extra env, returning stdout; errors carry
// git's stderr with secrets redacted.
func (m *Manager) runGit(ctx context.Context, dir string, env []string, creds credentials, stdin string, args ...string) (string, error) {
	cmd := gitrun.Runner{Git: m.git}.Command(ctx, "", env, append([]string{"-C", dir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", &gitError{args: args[0], err: err, stderr: creds.redact(summarize(stderr.String()))}
	}
	return stdout.String(), nil
}

// summarize keeps git's last lines of stderr, each whole, joined into one
// line for logs and status. The last lines are where git says what went
// wrong, and a message may go on past its "fatal:" line
// ("fatal: unable to connect to host:" then "host[0: 10.0.0.1]:
// errno=Connection refused"), so lines are not picked by prefix; only
// git's hints and its "To URL" banner are left out.
func summarize(stderr string) string {
	const maxLines = 6
	var keep []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "hint:") || strings.HasPrefix(l, "To ") {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) > maxLines {
		keep = keep[len(keep)-maxLines:]
	}
	return strings.Join(keep, "; ")
}

// gitError is a failed git command with its (redacted) stderr.
type gitError struct {
	args   string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("git %s: %v", e.args, e.err)
	}
	return fmt.Sprintf("git %s: %s", e.args, e.stderr)
}

func (e *gitError) Unwrap() error { return e.err }

// explainGitError turns git's fetch and push errors into what an operator
// should do about them. op is "fetch from" or "push to".
func explainGitError(op string, up Upstream, err error) error {
	var ge *gitError
	if !errors.As(err, &ge) {
		return err
	}
	s := ge.stderr
	has := func(subs ...string) bool {
		for _, sub := range subs {
			if strings.Contains(s, sub) {
				return true
			}
		}
		return false
	}
	hint := ""
	switch {
	case has("Host key verification failed"):
		hint = "the server's host key is not in the --known-hosts file given (or it changed): check it with ssh-keyscan and add the mirror again"
	case has("Permission denied", "Authentication failed", "could not read Username", "returned error: 401", "returned error: 403"):
		hint = "the server refused the credentials: check --ssh-key / --token-file and that they grant access to the repo"
	case has("Could not resolve host", "Connection refused", "timed out", "unable to connect", "Connection reset",
		"Failed to connect", "Could not connect", "Couldn't connect", "Empty reply from server"):
		hint = "the server is unreachable"
	case has("not found", "does not appear to be a git repository", "not a git repository", "returned error: 404", "No such file or directory"):
		hint = "there is no repository at that path: check the URL"
	case has("hung up unexpectedly"):
		hint = "the server closed the connection: it may be down or overloaded"
	}
	if hint == "" {
		return fmt.Errorf("%s %s failed: %w", op, up.URL, err)
	}
	return fmt.Errorf("%s %s failed: %s (%w)", op, up.URL, hint, err)
}
