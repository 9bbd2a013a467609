package storage

import (
	"fmt"
	"strings"
)

// maxNameLen bounds repo and user names; long enough for "team/service",
// short enough to stay far from PATH_MAX.
const maxNameLen = 128

// NormalizeRepoName turns what a client or operator typed into the canonical
// repo name: "/team/app.git/" and "team/app" both become "team/app". It
// rejects anything that could escape DATA/repos or confuse a shell or a log:
// "..", "." and empty segments, "~", NUL and control characters, a leading
// "//" (an absolute filesystem path), and characters outside
// [A-Za-z0-9._-] in a segment.
func NormalizeRepoName(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("%w: empty repo name", ErrInvalidName)
	}
	for _, r := range raw {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: repo name contains a control character", ErrInvalidName)
		}
	}
	if strings.HasPrefix(raw, "//") || strings.HasPrefix(raw, "~") {
		return "", fmt.Errorf("%w: %q is a filesystem path; use the repo name, e.g. \"team/app.git\"", ErrInvalidName, raw)
	}
	name := strings.TrimPrefix(raw, "/")
	name = strings.TrimSuffix(name, "/")
	name = strings.TrimSuffix(name, ".git")
	if name == "" {
		return "", fmt.Errorf("%w: empty repo name", ErrInvalidName)
	}
	if len(name) > maxNameLen {
		return "", fmt.Errorf("%w: repo name longer than %d characters", ErrInvalidName, maxNameLen)
	}
	for _, seg := range strings.Split(name, "/") {
		if err := checkSegment(seg); err != nil {
			return "", fmt.Errorf("%w: repo name %q: %v", ErrInvalidName, name, err)
		}
		if strings.HasSuffix(seg, ".git") {
			return "", fmt.Errorf("%w: repo name %q: only the last segment may end in .git", ErrInvalidName, name)
		}
	}
	return name, nil
}

// ValidateUserName checks a user name: one segment of [A-Za-z0-9._-].
func ValidateUserName(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("%w: user name longer than 64 characters", ErrInvalidName)
	}
	if err := checkSegment(name); err != nil {
		return fmt.Errorf("%w: user name %q: %v", ErrInvalidName, name, err)
	}
	return nil
}

func checkSegment(seg string) error {
	switch seg {
	case "":
		return fmt.Errorf("empty path segment")
	case ".", "..":
		return fmt.Errorf("%q is not allowed", seg)
	}
	if seg[0] == '.' || seg[0] == '-' {
		return fmt.Errorf("segment %q must start with a letter or digit", seg)
	}
	for _, r := range seg {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("character %q is not allowed (use letters, digits, '.', '_', '-')", r)
		}
	}
	return nil
}
