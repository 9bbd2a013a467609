package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// DefaultPushInterval is the time between full passes of a push mirror.
const DefaultPushInterval = 10 * time.Minute

// pushKey is the scheduling key of a push mirror; pull mirrors use the
// bare repo name, which can never contain a NUL.
func pushKey(repo, id string) string { return "push\x00" + repo + "\x00" + id }

func parsePushKey(key string) (repo, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, "push\x00")
	if !ok {
		return "", "", false
	}
	repo, id, ok = strings.Cut(rest, "\x00")
	return repo, id, ok
}

// PushMirrorID derives a push mirror's id from its remote URL.
func PushMirrorID(remote string) string {
	sum := sha256.Sum256([]byte(remote))
	return hex.EncodeToString(sum[:6])
}

// AddPush creates a push mirror of a hosted repo and runs its first push.
// Unlike a pull mirror, a failed first push keeps the push mirror: the
// remote may be down, and the retries with backoff will deliver.
func (m *Manager) AddPush(ctx context.Context, p storage.PushMirror, creds map[string][]byte) (storage.PushMirror, error) {
	repo, err := storage.NormalizeRepoName(p.Repo)
	if err != nil {
		return p, err
	}
	if _, err := m.store.Repo(repo); err != nil {
		return p, err
	}
	up, err := ParseRemote(p.Remote)
	if err != nil {
		return p, err
	}
	if up.Scheme == "ssh" && len(creds[CredKnownHosts]) == 0 {
		return p, fmt.Errorf("an ssh remote needs --known-hosts FILE with its host key (fjord never trusts a host key on first use)")
	}
	p.Repo, p.Remote, p.ID = repo, up.URL, PushMirrorID(up.URL)
	if p.Interval <= 0 {
		p.Interval = DefaultPushInterval
	}
	for k := range creds {
		p.Credentials = append(p.Credentials, k)
	}
	if err := m.store.CreatePushMirror(p); err != nil {
		return p, err
	}
	if err := m.store.WriteCredentials(m.store.PushCredentialDir(repo, p.ID), repo, creds); err != nil {
		m.store.DeletePushMirror(repo, p.ID)
		return p, err
	}
	key := pushKey(repo, p.ID)
	m.mu.Lock()
	m.stateLocked(key).removed = false
	m.mu.Unlock()
	c := m.trigger(key, "add")
	select {
	case <-c.done:
	case <-ctx.Done():
		return p, ctx.Err()
	}
	stored, err := m.pushMirror(repo, p.ID)
	if err != nil {
		return p, err
	}
	return stored, c.err
}

// DeletePush removes a push mirror.
func (m *Manager) DeletePush(_ context.Context, repo, remote string) error {
	up, err := ParseRemote(remote)
	if err != nil {
		return err
	}
	id := PushMirrorID(up.URL)
	m.forget(pushKey(repo, id))
	return m.store.DeletePushMirror(repo, id)
}

func (m *Manager) pushMirror(repo, id string) (storage.PushMirror, error) {
	ps, err := m.store.PushMirrors(repo)
	if err != nil {
		return storage.PushMirror{}, err
	}
	for _, p := range ps {
		if p.ID == id {
			return p, nil
		}
	}
	return storage.PushMirror{}, fmt.Errorf("push mirror of %q: %w", repo, storage.ErrNotFound)
}

// pushAndRecord pushes every branch and tag of the repo to the remote,
// removing there what was removed here (git sends only what differs), and
// records the outcome.
func (m *Manager) pushAndRecord(ctx context.Context, repo, id, trigger string) (storage.MirrorSync, error) {
	p, err := m.pushMirror(repo, id)
	if err != nil {
		return storage.MirrorSync{}, err
	}
	start := time.Now()
	rec := storage.MirrorSync{Start: start.UTC(), Trigger: trigger, Fetched: true}
	err = m.push(ctx, p)
	rec.Duration = time.Since(start)
	if err != nil {
		rec.Error = err.Error()
	}
	if ctx.Err() != nil {
		return rec, err
	}
	var failures int
	if _, uerr := m.store.UpdatePushMirror(repo, id, func(s *storage.PushMirror) {
		s.LastAttempt = start.UTC()
		if err != nil {
			s.LastError, s.Failures = rec.Error, s.Failures+1
		} else {
			s.LastSuccess, s.LastError, s.Failures = start.UTC(), "", 0
		}
		failures = s.Failures
	}); uerr != nil {
		m.log.Error("record push mirror", "repo", repo, "remote", p.Remote, "err", uerr)
	}
	key := pushKey(repo, id)
	if err != nil {
		wait := backoff(failures)
		m.log.Warn("push mirror failed", "repo", repo, "remote", p.Remote, "trigger", trigger, "err", err, "retry_in", wait)
		m.schedule(key, wait)
		return rec, err
	}
	m.log.Info("push mirror delivered", "repo", repo, "remote", p.Remote, "trigger", trigger, "duration", rec.Duration)
	m.schedule(key, jitter(p.Interval))
	return rec, nil
}

func (m *Manager) push(ctx context.Context, p storage.PushMirror) error {
	up, err := ParseRemote(p.Remote)
	if err != nil {
		return err
	}
	creds, err := loadCredentials(m.store.PushCredentialDir(p.Repo, p.ID))
	if err != nil {
		return err
	}
	env, err := creds.gitEnv(up)
	if err != nil {
		return err
	}
	// A repo with no branches or tags yet has nothing to send; pushing it
	// with --prune would empty the remote, which is never what a DR copy
	// of a new repo should do.
	if snap, ok := m.store.Refs(p.Repo); !ok || len(localRefs(snap)) == 0 {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	_, err = m.runGit(sctx, m.store.RepoPath(p.Repo), env, creds, "", "push", "--quiet", "--prune", "--", up.URL,
		"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
	if err != nil {
		return explainGitError("push to", up, err)
	}
	return nil
}

// watchPushes triggers the push mirrors of every repo whose refs change,
// until sub is closed.
func (m *Manager) watchPushes(sub *storage.Subscription[storage.RefChange]) {
	for c := range sub.C {
		ps, err := m.store.PushMirrors(c.Repo)
		if err != nil {
			m.log.Error("list push mirrors", "repo", c.Repo, "err", err)
			continue
		}
		for _, p := range ps {
			m.trigger(pushKey(p.Repo, p.ID), "push")
		}
	}
}
