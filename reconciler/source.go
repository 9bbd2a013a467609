package reconciler

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/fjordhq/fjord/storage"
)

// resolveRepo maps a repoURL to a repo of this fjord. Accepted, in order:
// a repo name ("team/app", "app.git"); an ssh:// URL whose port is fjord's
// SSH port; and the upstream URL of one of fjord's pull mirrors, so an
// Application written for GitHub reads the co-located mirror unchanged.
func (r *Reconciler) resolveRepo(repoURL string) (string, error) {
	if !strings.Contains(repoURL, ":") {
		name, err := storage.NormalizeRepoName(repoURL)
		if err == nil {
			if _, err := r.store.Repo(name); err == nil {
				return name, nil
			}
		}
	}
	if u, err := url.Parse(repoURL); err == nil && u.Scheme == "ssh" && r.sshPort != "" && u.Port() == r.sshPort {
		name, err := storage.NormalizeRepoName(u.Path)
		if err != nil {
			return "", fmt.Errorf("repoURL %q: %w", repoURL, err)
		}
		if _, err := r.store.Repo(name); err != nil {
			return "", fmt.Errorf("repoURL %q names repo %q, which this fjord does not have: create or mirror it first (`fjord repo list`)", repoURL, name)
		}
		return name, nil
	}
	if ms, err := r.store.Mirrors(); err == nil {
		for _, m := range ms {
			if sameRemote(m.Upstream, repoURL) {
				return m.Repo, nil
			}
		}
	}
	return "", fmt.Errorf("repoURL %q is not a repo of this fjord: use the repo's name (see `fjord repo list`), its fjord SSH URL (ssh://HOST:%s/NAME.git), or mirror that upstream first with `fjord mirror add NAME --upstream %s`", repoURL, orDefault(r.sshPort, "PORT"), repoURL)
}

// sameRemote compares two git URLs loosely: scheme, user, and a trailing
// ".git" or "/" do not matter, so git@github.com:org/repo.git and
// https://github.com/org/repo name the same repository.
func sameRemote(a, b string) bool { return remoteKey(a) == remoteKey(b) }

func remoteKey(s string) string {
	s = strings.TrimSpace(s)
	host, path := "", s
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		host, path = u.Hostname(), u.Path
	} else if at := strings.Index(s, "@"); at >= 0 && strings.Contains(s[at:], ":") {
		// scp-like: user@host:path
		rest := s[at+1:]
		i := strings.Index(rest, ":")
		host, path = rest[:i], rest[i+1:]
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	return strings.ToLower(host) + "/" + path
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
