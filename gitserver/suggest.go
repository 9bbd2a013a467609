package gitserver

import "github.com/fjordhq/fjord/storage"

// notFound is the refusal for a repo the user may not read, whether it is
// missing or hidden: the same words either way, so a client cannot probe
// which repos exist. When a repo the user may read has a name close to the
// one asked for (a typo: "dmeo" for "demo"), it is suggested; the
// suggestion is chosen among readable repos only and does not depend on
// whether the name asked for exists.
func (s *Server) notFound(user *storage.User, repo string) error {
	if near := s.nearestReadable(user, repo); near != "" {
		return refusal("access", "repository %q not found, or you have no access to it; did you mean %q?", repo, near)
	}
	return refusal("access", "repository %q not found, or you have no access to it", repo)
}

// nearestReadable returns the repo the user may read whose name is
// closest to name, within a few edits, or "" when none is. Ties go to the
// first in name order (the order of Store.Repos).
func (s *Server) nearestReadable(user *storage.User, name string) string {
	repos, err := s.store.Repos()
	if err != nil {
		s.log.Warn("list repos for a suggestion", "err", err)
		return ""
	}
	limit := min(3, 1+len(name)/5)
	best, bestD := "", limit+1
	for _, r := range repos {
		if r.Name == name {
			continue
		}
		d := storage.EditDistance(name, r.Name)
		if d >= bestD {
			continue
		}
		if s.store.AccessFor(user, r.Name) < storage.AccessRead {
			continue
		}
		best, bestD = r.Name, d
	}
	return best
}
