package ui

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fjordhq/fjord/internal/gitrun"
	"github.com/fjordhq/fjord/storage"
)

// maxCommitCache bounds the subject cache; past it the cache starts over.
const maxCommitCache = 20000

// commitCache holds commit subjects. A commit never changes, so an entry
// never goes stale; the apps page asks for many at once, one git per repo.
type commitCache struct {
	store *storage.Store
	git   gitrun.Runner
	log   *slog.Logger

	mu       sync.Mutex
	subjects map[string]string // repo "\x00" commit -> subject
}

func newCommitCache(store *storage.Store, git string, log *slog.Logger) *commitCache {
	return &commitCache{store: store, git: gitrun.Runner{Git: git, WaitDelay: 5 * time.Second}, log: log, subjects: map[string]string{}}
}

// Subjects returns the subject of each commit of want (repo -> commits)
// keyed by repo "\x00" commit. Commits git cannot read are left out.
func (c *commitCache) Subjects(ctx context.Context, want map[string][]string) map[string]string {
	out := map[string]string{}
	missing := map[string][]string{}
	c.mu.Lock()
	for repo, commits := range want {
		for _, sha := range commits {
			if s, ok := c.subjects[repo+"\x00"+sha]; ok {
				out[repo+"\x00"+sha] = s
			} else {
				missing[repo] = append(missing[repo], sha)
			}
		}
	}
	c.mu.Unlock()
	for repo, commits := range missing {
		got := c.read(ctx, repo, commits)
		c.mu.Lock()
		if len(c.subjects)+len(got) > maxCommitCache {
			c.subjects = map[string]string{}
		}
		for sha, s := range got {
			c.subjects[repo+"\x00"+sha] = s
			out[repo+"\x00"+sha] = s
		}
		c.mu.Unlock()
	}
	return out
}

// read asks git for the subjects of commits in one run.
func (c *commitCache) read(ctx context.Context, repo string, commits []string) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var in bytes.Buffer
	for _, sha := range commits {
		if isHex(sha) {
			in.WriteString(sha + "\n")
		}
	}
	got := map[string]string{}
	if in.Len() == 0 {
		return got
	}
	// --ignore-missing: a commit gone from the repo (a force-push, a repo
	// deleted and created again) must not cost the others their subject.
	out, err := c.git.Output(ctx, c.store.RepoPath(repo), &in, "log", "--no-walk=unsorted", "--ignore-missing", "--stdin", "--format=%H %s")
	if err != nil {
		// The page still shows the commits, without subjects; say why.
		c.log.Warn("ui: read commit subjects", "repo", repo, "err", err)
		return got
	}
	for _, line := range bytes.Split(out, []byte{'\n'}) {
		sha, subject, ok := bytes.Cut(line, []byte{' '})
		if ok {
			got[string(sha)] = string(subject)
		}
	}
	return got
}

func isHex(s string) bool {
	if len(s) < 4 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}
