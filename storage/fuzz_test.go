package storage

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzNormalizeRepoName holds repo-name normalization to what its comment
// promises for any input: an accepted name is canonical (normalizing it
// again changes nothing), stays inside DATA/repos, and holds only
// [A-Za-z0-9._-] segments without "." or ".." and without ".git" inside.
func FuzzNormalizeRepoName(f *testing.F) {
	for _, s := range []string{
		"team/app", "/team/app.git/", "app.git", "../etc", "//etc/passwd", "~root", "a//b", "a/./b",
		"team/app.git/x", ".hidden", "-x", "a\x00b", "ünï", strings.Repeat("a", 129), "x.git.git",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		name, err := NormalizeRepoName(raw)
		if err != nil {
			return
		}
		if again, err := NormalizeRepoName(name); err != nil || again != name {
			t.Fatalf("%q normalizes to %q, which normalizes to %q (%v)", raw, name, again, err)
		}
		if len(name) == 0 || len(name) > maxNameLen {
			t.Fatalf("%q normalizes to %q of length %d", raw, name, len(name))
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.HasSuffix(seg, ".git") || checkSegment(seg) != nil {
				t.Fatalf("%q normalizes to %q with segment %q", raw, name, seg)
			}
		}
		const root = "/data/repos"
		if full := filepath.Join(root, name+".git"); !strings.HasPrefix(full, root+"/") || filepath.Clean(full) != full {
			t.Fatalf("%q names %q, outside %s", raw, full, root)
		}
	})
}

// FuzzValidateUserName: an accepted user name is one safe segment.
func FuzzValidateUserName(f *testing.F) {
	for _, s := range []string{"alice", "ci-bot_1", "", ".", "..", "a/b", "-x", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateUserName(name) != nil {
			return
		}
		if name == "" || len(name) > 64 || strings.ContainsAny(name, "/\\ \x00") || name[0] == '.' || name[0] == '-' {
			t.Fatalf("user name %q accepted", name)
		}
	})
}
