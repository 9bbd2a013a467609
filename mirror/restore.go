package mirror

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fjordhq/fjord/storage"
)

// Restored is what Restore did.
type Restored struct {
	// Event is the history-protection event whose old tip was restored.
	Event storage.MirrorEvent `json:"event"`
	// Target is the upstream ref the old tip was pushed to.
	Target string `json:"target"`
	// Sync is the sync that brought the restored ref into the mirror.
	Sync storage.MirrorSync `json:"sync"`
}

// Restore undoes an upstream force-push or deletion recorded as event id:
// it pushes the old tip kept under the event's backup ref to the upstream,
// onto the ref it was on or, with toBranch, onto a new branch, then syncs
// so the mirror serves it. The restore goes to the upstream because the
// mirror is a copy of it: a ref made only here would be removed by the
// next sync. The push is guarded by --force-with-lease: the ref must still
// be where the event left it (a new branch must not exist yet), so a
// restore never overwrites work pushed upstream since.
func (m *Manager) Restore(ctx context.Context, repo string, id uint64, toBranch string) (Restored, error) {
	res := Restored{}
	mir, err := m.store.Mirror(repo)
	if err != nil {
		return res, err
	}
	ev, err := m.store.MirrorEvent(repo, id)
	if err != nil {
		return res, fmt.Errorf("%w: see fjord mirror history %s for the events kept", err, repo)
	}
	res.Event = ev
	path := m.store.RepoPath(repo)
	kept, err := m.runGit(ctx, path, nil, credentials{}, "", "rev-parse", "--verify", "--end-of-options", ev.BackupRef)
	if err != nil || strings.TrimSpace(kept) != ev.Old {
		return res, fmt.Errorf("event %d of %q: its backup ref %s no longer holds %s: %v", id, repo, ev.BackupRef, ev.Old, err)
	}
	target, expect := ev.Ref, ev.New
	if toBranch != "" {
		target, expect = "refs/heads/"+toBranch, ""
		if _, err := m.runGit(ctx, path, nil, credentials{}, "", "check-ref-format", target); err != nil {
			return res, fmt.Errorf("--to-branch %q is not a valid branch name", toBranch)
		}
	}
	res.Target = target
	up, err := ParseUpstream(mir.Upstream)
	if err != nil {
		return res, err
	}
	creds, err := loadCredentials(m.store.CredentialDir("mirror", repo))
	if err != nil {
		return res, err
	}
	env, err := creds.gitEnv(up)
	if err != nil {
		return res, err
	}
	sctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	// An empty expected value means "must not exist": a deleted ref is
	// recreated only if nobody recreated it since.
	_, err = m.runGit(sctx, path, env, creds, "", "push", "--quiet", "--force-with-lease="+target+":"+expect,
		"--", up.URL, ev.Old+":"+target)
	if err != nil {
		var ge *gitError
		if errors.As(err, &ge) && strings.Contains(ge.stderr, "stale info") {
			if toBranch != "" {
				return res, fmt.Errorf("the upstream already has %s: choose another --to-branch", target)
			}
			return res, fmt.Errorf("the upstream's %s has moved since event %d (it is no longer %s): restore to a new branch with --to-branch NAME and merge from there", target, id, short(expect))
		}
		return res, explainGitError("push to", up, err)
	}
	m.log.Info("restored an old tip to the upstream", "mirror", repo, "event", id, "ref", target, "commit", ev.Old)
	res.Sync, err = m.syncNow(ctx, repo, "restore")
	if err != nil {
		return res, fmt.Errorf("pushed %s to the upstream's %s, but the sync that follows failed: %w", short(ev.Old), target, err)
	}
	return res, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	if id == "" {
		return "absent"
	}
	return id
}
