package helmrepo

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/fjordhq/fjord/storage"
)

// NormalizeURL checks a Helm repository URL as an operator or an
// Application gives it and returns its canonical form: scheme and host in
// lower case, no trailing slash. It accepts https://, http:// and
// oci://HOST/PATH, and refuses credentials in the URL (they would end up in
// logs and errors): use --username and --password-file.
func NormalizeURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", fmt.Errorf("empty helm repository URL")
	}
	for _, r := range raw {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return "", fmt.Errorf("helm repository URL contains a space or control character")
		}
	}
	// "user:s3cret@host" parses as scheme "user" with an opaque part that
	// u.Redacted does not touch: refuse userinfo before any '/' up front,
	// before any message could quote the URL.
	if at := strings.IndexByte(raw, '@'); at >= 0 {
		if slash := strings.IndexByte(raw, '/'); slash < 0 || at < slash {
			return "", fmt.Errorf("helm repository URL: credentials do not belong in the URL (they would show in logs); give them with --username U --password-file FILE")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("helm repository URL is not a URL: %w", redactURLError(err))
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch u.Scheme {
	case "https", "http", "oci":
	case "":
		return "", fmt.Errorf("helm repository %q has no scheme: use https://HOST/PATH or oci://HOST/PATH", raw)
	default:
		// Only the scheme: the rest of an unknown scheme's URL may be an
		// opaque part holding anything.
		return "", fmt.Errorf("helm repository URL: scheme %q is not supported: use https://, http:// or oci://", u.Scheme)
	}
	if u.User != nil {
		u.User = nil
		return "", fmt.Errorf("helm repository %s: credentials do not belong in the URL (they would show in logs); give them with --username U --password-file FILE", u.String())
	}
	if u.Host == "" {
		return "", fmt.Errorf("helm repository %q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("helm repository %s: a query or fragment is not supported (a token belongs in --password-file)", u.Scheme+"://"+u.Host+u.Path)
	}
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if u.Scheme == "oci" && u.Path == "" {
		return "", fmt.Errorf("helm repository %s: an OCI repository needs a path (oci://HOST/PATH, the chart name is appended)", u.String())
	}
	return u.String(), nil
}

// redactURLError keeps url.Parse's complaint but not the URL it quotes,
// which may hold a password.
func redactURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// isOCI reports whether a normalized URL names an OCI registry path.
func isOCI(u string) bool { return strings.HasPrefix(u, "oci://") }

// nameFor derives a repository name from a normalized URL: host, port and
// path segments joined by '-', e.g. "charts.example.com-stable".
func nameFor(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "helm"
	}
	parts := []string{u.Hostname()}
	if p := u.Port(); p != "" {
		parts = append(parts, p)
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg != "" {
			parts = append(parts, seg)
		}
	}
	var b strings.Builder
	for _, r := range strings.ToLower(strings.Join(parts, "-")) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), ".-_")
	if len(name) > 56 {
		name = strings.Trim(name[:56], ".-_")
	}
	if storage.ValidateHelmRepoName(name) != nil {
		return "helm"
	}
	return name
}

// checkChartName refuses a chart name that could leave the repository's
// directory or confuse a URL: one segment of [A-Za-z0-9._-] (what Helm
// allows in practice), not starting with '.'. In an OCI registry a chart
// may sit deeper (chart: team/web): there each '/'-separated segment is
// checked so.
func checkChartName(name string, oci bool) error {
	if name == "" {
		return fmt.Errorf("empty chart name")
	}
	if len(name) > 128 {
		return fmt.Errorf("chart name longer than 128 characters")
	}
	if oci && strings.Contains(name, "/") {
		for _, seg := range strings.Split(name, "/") {
			if err := checkChartName(seg, false); err != nil {
				return fmt.Errorf("chart name %q: %w", name, err)
			}
		}
		return nil
	}
	if name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return fmt.Errorf("chart name %q is not allowed: it must start with a letter or digit", name)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("chart name %q is not allowed: character %q (a chart name is letters, digits, '.', '_', '-'; a path belongs in the repository URL)", name, r)
		}
	}
	return nil
}

// fileName is a checked chart name as one path segment: '/' of an OCI
// chart path escaped, so "team/web" and "team_web" stay apart.
func fileName(chart string) string { return strings.ReplaceAll(chart, "/", "%2F") }

// checkVersion refuses a chart version from an index or a registry that is
// not safe in a file name (Helm's own checks allow "+" build metadata).
func checkVersion(v string) error {
	if v == "" || v == "." || v == ".." || strings.HasPrefix(v, ".") {
		return fmt.Errorf("chart version %q is not allowed", v)
	}
	for _, r := range v {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-', r == '+':
		default:
			return fmt.Errorf("chart version %q is not allowed: character %q", v, r)
		}
	}
	return nil
}
