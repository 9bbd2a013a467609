package mirror

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Upstream is a parsed upstream URL.
type Upstream struct {
	// URL is what git is given: never with a password in it.
	URL string
	// Scheme is ssh, https, http, git or file (scp-style URLs are ssh).
	Scheme string
	// User is the SSH user (git@...), empty otherwise.
	User string
	// Host is the host, with port if one was given; empty for file.
	Host string
	// Path is the repository path on the host.
	Path string
}

// scpLike matches git's scp-style syntax: [user@]host:path, where the
// host has no slash before the colon.
var scpLike = regexp.MustCompile(`^(?:([A-Za-z0-9._-]+)@)?([A-Za-z0-9.-]+):([^/].*|/.*)$`)

// ParseUpstream checks an upstream URL the way an operator typed it and
// returns it in canonical form. It refuses passwords and tokens in the URL
// (they would end up in logs and git config): use --token-file.
func ParseUpstream(raw string) (Upstream, error) { return parseURL(raw, "upstream") }

// ParseRemote checks a push mirror's remote URL as ParseUpstream checks an
// upstream; its errors call it the remote.
func ParseRemote(raw string) (Upstream, error) { return parseURL(raw, "remote") }

// parseURL is ParseUpstream and ParseRemote; what names the URL in errors.
func parseURL(raw, what string) (Upstream, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Upstream{}, fmt.Errorf("empty %s URL", what)
	}
	for _, r := range raw {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return Upstream{}, fmt.Errorf("%s URL contains a space or control character", what)
		}
	}
	if strings.HasPrefix(raw, "-") {
		return Upstream{}, fmt.Errorf("%s URL may not start with '-'", what)
	}
	if !strings.Contains(raw, "://") {
		m := scpLike.FindStringSubmatch(raw)
		if m == nil {
			return Upstream{}, fmt.Errorf("%s %q is not a URL: use ssh://, https://, http://, git://, file:// or git@host:path", what, raw)
		}
		return Upstream{URL: raw, Scheme: "ssh", User: m[1], Host: m[2], Path: m[3]}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, which may hold a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Upstream{}, fmt.Errorf("%s URL does not parse: %v", what, err)
	}
	up := Upstream{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	switch u.Scheme {
	case "ssh", "git+ssh":
		up.Scheme = "ssh"
	case "https", "http", "git":
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return Upstream{}, fmt.Errorf("file:// URL with host %q: use file:///absolute/path", u.Host)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return Upstream{}, fmt.Errorf("file:// URL needs an absolute path")
		}
		up.Host = ""
	default:
		return Upstream{}, fmt.Errorf("%s scheme %q is not supported: use ssh, https, http, git or file", what, u.Scheme)
	}
	if u.User != nil {
		if _, hasPass := u.User.Password(); hasPass {
			return Upstream{}, fmt.Errorf("%s URL contains a password: remove it and pass the secret with --token-file", what)
		}
		if up.Scheme != "ssh" {
			return Upstream{}, fmt.Errorf("%s URL contains a user name or token: remove it and pass the secret with --token-file", what)
		}
		up.User = u.User.Username()
	}
	if up.Scheme != "file" && up.Host == "" {
		return Upstream{}, fmt.Errorf("%s URL has no host", what)
	}
	if up.Path == "" || up.Path == "/" {
		return Upstream{}, fmt.Errorf("%s URL has no repository path", what)
	}
	u.Scheme = up.Scheme
	up.URL = u.String()
	return up, nil
}

// Redact removes userinfo from anything that looks like a URL in s, for
// errors and logs.
func Redact(s string) string {
	return userinfo.ReplaceAllString(s, "$1")
}

var userinfo = regexp.MustCompile(`([a-z+]+://)[^/@\s]*@`)

// Key returns the form used to match webhook payloads to mirrors:
// host/path, lower case, without scheme, user, port or ".git", so that
// https://github.com/Org/App and git@github.com:org/app.git match.
func (u Upstream) Key() string {
	host := u.Host
	if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	path := strings.Trim(u.Path, "/")
	path = strings.TrimSuffix(path, ".git")
	return strings.ToLower(host + "/" + path)
}

// KeyOf parses raw and returns its Key, or "" if it does not parse.
func KeyOf(raw string) string {
	u, err := ParseUpstream(raw)
	if err != nil {
		return ""
	}
	return u.Key()
}
