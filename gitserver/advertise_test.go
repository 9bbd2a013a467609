package gitserver_test

import (
	"bytes"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// gitUploadPack runs the installed git's upload-pack on a bare repo with
// the settings fjord serves with, to compare its output with fjord's.
func gitUploadPack(t *testing.T, repo, proto string, stdin []byte, args ...string) []byte {
	t.Helper()
	full := append([]string{
		"-c", "uploadpack.allowReachableSHA1InWant=true",
		"-c", "uploadpack.allowFilter=true",
		"-c", "uploadpack.hideRefs=refs/fjord/",
		"upload-pack"}, args...)
	cmd := exec.Command("git", append(full, repo)...)
	cmd.Env = append(cmd.Environ(), "GIT_PROTOCOL="+proto, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git upload-pack: %v", err)
	}
	return out
}

func pktLines(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	for len(s) > 0 {
		if len(s) < 4 {
			t.Fatalf("truncated pkt-line %q", s)
		}
		var n int
		if _, err := fmtSscanfHex(s[:4], &n); err != nil {
			t.Fatalf("bad pkt length %q", s[:4])
		}
		if n < 4 {
			out = append(out, s[:4])
			s = s[4:]
			continue
		}
		out = append(out, s[4:n])
		s = s[n:]
	}
	return out
}

// TestAdvertisementMatchesGit proves the fast path answers exactly what git
// would: the v0 advertisement (capabilities compared as a set, since fjord
// places symref first) and the v2 capability advertisement and ls-refs
// response (byte for byte), on a repo with branches, annotated and
// lightweight tags, and a hidden ref that must not show.
func TestAdvertisementMatchesGit(t *testing.T) {
	e := newEnv(t, envOptions{})
	ci := e.user("ci", true)
	e.repo("app", false)
	work := e.seed(ci, "app", 3)
	e.mustGit(work, ci, "tag", "-a", "v1", "-m", "one")
	e.mustGit(work, ci, "tag", "light", "HEAD~1")
	e.mustGit(work, ci, "push", "-q", "origin", "--tags", "HEAD:refs/heads/feature/x")
	bare := e.store.RepoPath("app")
	if out, err := exec.Command("git", "-C", bare, "update-ref", "refs/fjord/backup/1/refs/heads/main", "HEAD~1").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := e.store.RefreshRefs(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	c := e.dial(ci)

	t.Run("v0", func(t *testing.T) {
		got, _, err := execRaw(t, c, "git-upload-pack 'app.git'", []byte("0000"), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := string(gitUploadPack(t, bare, "", nil, "--advertise-refs"))
		gl, wl := pktLines(t, got), pktLines(t, want)
		if len(gl) != len(wl) {
			t.Fatalf("fjord advertised %d lines, git %d:\n%q\n%q", len(gl), len(wl), gl, wl)
		}
		for i := range gl {
			if i == 0 {
				gref, gcaps, _ := strings.Cut(gl[0], "\x00")
				wref, wcaps, _ := strings.Cut(wl[0], "\x00")
				if gref != wref || !sameFields(gcaps, wcaps) {
					t.Fatalf("first line:\n fjord %q\n git   %q", gl[0], wl[0])
				}
				continue
			}
			if gl[i] != wl[i] {
				t.Fatalf("line %d: fjord %q, git %q", i, gl[i], wl[i])
			}
		}
		if strings.Contains(got, "refs/fjord/") {
			t.Fatal("hidden ref advertised")
		}
	})

	t.Run("v2", func(t *testing.T) {
		for _, args := range [][]string{
			{"peel", "symrefs", "unborn", "ref-prefix HEAD", "ref-prefix refs/heads/", "ref-prefix refs/tags/"},
			{},
			{"symrefs", "ref-prefix refs/heads/feature/"},
			{"peel", "ref-prefix refs/fjord/"},
		} {
			req := "0014command=ls-refs\n" + "0001"
			for _, a := range args {
				req += string(appendPktForTest(a + "\n"))
			}
			req += "0000"
			got, _, err := execRaw(t, c, "git-upload-pack '/app'", []byte(req+"0000"), map[string]string{"GIT_PROTOCOL": "version=2"})
			if err != nil {
				t.Fatal(err)
			}
			want := string(gitUploadPack(t, bare, "version=2", nil, "--advertise-refs")) +
				string(gitUploadPack(t, bare, "version=2", []byte(req), "--stateless-rpc"))
			if got != want {
				t.Fatalf("ls-refs %v:\nfjord %q\ngit   %q", args, got, want)
			}
		}
	})

	t.Run("empty repo", func(t *testing.T) {
		e.repo("empty", false)
		got, stderr, err := execRaw(t, c, "git-upload-pack 'empty'", []byte("0000"), nil)
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		if want := string(gitUploadPack(t, e.store.RepoPath("empty"), "", nil, "--advertise-refs")); got != want {
			t.Fatalf("empty repo: fjord %q, git %q", got, want)
		}
		req := "0014command=ls-refs\n0001" + string(appendPktForTest("symrefs\n")) + string(appendPktForTest("unborn\n")) + "0000"
		got, stderr, err = execRaw(t, c, "git-upload-pack 'empty'", []byte(req+"0000"), map[string]string{"GIT_PROTOCOL": "version=2"})
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		want := string(gitUploadPack(t, e.store.RepoPath("empty"), "version=2", nil, "--advertise-refs")) +
			string(gitUploadPack(t, e.store.RepoPath("empty"), "version=2", []byte(req), "--stateless-rpc"))
		if got != want {
			t.Fatalf("empty ls-refs:\nfjord %q\ngit   %q", got, want)
		}
	})
}

func sameFields(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	sort.Strings(fa)
	sort.Strings(fb)
	return strings.Join(fa, " ") == strings.Join(fb, " ")
}
