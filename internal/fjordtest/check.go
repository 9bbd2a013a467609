package fjordtest

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Fsck runs `git fsck --strict` on a repo of the data dir and returns
// what it reported when it was not clean.
func (s *Server) Fsck(ctx context.Context, repo string) error {
	cmd := exec.CommandContext(ctx, "git", "-C", s.RepoPath(repo), "fsck", "--strict", "--no-dangling", "--no-progress")
	cmd.Env = s.env()
	out, err := cmd.CombinedOutput()
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// "notice:" lines describe a repo that has no commit yet (HEAD
		// unborn, no default references): a kill before the first push
		// leaves exactly that, and it is not damage.
		if l != "" && !strings.HasPrefix(l, "notice: ") {
			problems = append(problems, l)
		}
	}
	if err != nil || len(problems) > 0 {
		return fmt.Errorf("git fsck of %s: %v: %s", repo, err, strings.Join(problems, "\n"))
	}
	return nil
}

// DiskRefs returns the refs of a repo as git reads them from disk, as
// "HASH NAME" lines sorted by name, without fjord's hidden refs/fjord/.
func (s *Server) DiskRefs(ctx context.Context, repo string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "git", "-C", s.RepoPath(repo), "for-each-ref", "--format=%(objectname) %(refname)")
	cmd.Env = s.env()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("for-each-ref in %s: %w", repo, err)
	}
	var refs []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, " refs/fjord/") {
			refs = append(refs, l)
		}
	}
	sortByName(refs)
	return refs, nil
}

// ServedRefs returns the refs fjord advertises for a repo over SSH (its
// in-memory snapshot), in the form of DiskRefs.
func (s *Server) ServedRefs(ctx context.Context, repo string) ([]string, error) {
	out, err := s.Git(ctx, "", "ls-remote", s.URL(repo))
	if err != nil {
		return nil, fmt.Errorf("ls-remote %s: %w: %s", repo, err, out)
	}
	return parseLsRemote(out), nil
}

// parseLsRemote turns ls-remote output into DiskRefs' form, leaving out
// HEAD and peeled tags.
func parseLsRemote(out string) []string {
	var refs []string
	for _, l := range strings.Split(out, "\n") {
		hash, name, ok := strings.Cut(l, "\t")
		if !ok || name == "HEAD" || strings.HasSuffix(name, "^{}") {
			continue
		}
		refs = append(refs, hash+" "+name)
	}
	sortByName(refs)
	return refs
}

// LsRemote lists the refs of any git URL in DiskRefs' form.
func (s *Server) LsRemote(ctx context.Context, url string) ([]string, error) {
	out, err := s.Git(ctx, "", "ls-remote", url)
	if err != nil {
		return nil, fmt.Errorf("ls-remote %s: %w: %s", url, err, out)
	}
	return parseLsRemote(out), nil
}

func sortByName(refs []string) {
	sort.Slice(refs, func(i, j int) bool {
		_, a, _ := strings.Cut(refs[i], " ")
		_, b, _ := strings.Cut(refs[j], " ")
		return a < b
	})
}

// ServedMatchesDisk checks that the refs fjord serves for repo are those
// on disk. A ref update in flight (a sync the server started by itself)
// may make them differ for a moment, so it looks again for up to wait.
func (s *Server) ServedMatchesDisk(ctx context.Context, repo string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		served, err := s.ServedRefs(ctx, repo)
		if err != nil {
			return err
		}
		disk, err := s.DiskRefs(ctx, repo)
		if err != nil {
			return err
		}
		if equal(served, disk) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("repo %s: served refs differ from disk:\nserved %v\ndisk   %v", repo, served, disk)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
