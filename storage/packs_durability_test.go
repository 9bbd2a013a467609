package storage

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// These tests drive the follower's fast path (addPacks, addLooseRefs,
// fileBatch.commit, as moveRefs calls them) on real repos made by real
// git, and watch the order of its durable steps through fileBatch.hook:
// a power loss cannot be staged in a test, but the order that makes one
// harmless can be checked, and a failing fsync can be injected.

// gitIn runs git in dir ("" for none) and returns its trimmed output.
func gitIn(t testing.TB, dir string, args ...string) string {
	t.Helper()
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// sentPush pushes a new commit to ref of a fresh bare repo as a push
// reaches a primary (receive-pack keeping the pack), and returns the pack
// it arrived in, as a change sends it, the commit, and an empty bare repo
// for a follower to install it in.
func sentPush(t testing.TB, ref string) (p Pack, commit, follower string) {
	t.Helper()
	root := t.TempDir()
	primary, work := filepath.Join(root, "primary.git"), filepath.Join(root, "work")
	follower = filepath.Join(root, "follower.git")
	gitIn(t, "", "init", "-q", "--bare", primary)
	gitIn(t, "", "init", "-q", "--bare", follower)
	gitIn(t, "", "init", "-q", "-b", "main", work)
	if err := os.WriteFile(filepath.Join(work, "f"), []byte(ref+"\n"), 0o644); err != nil { // a pack per ref
		t.Fatal(err)
	}
	gitIn(t, work, "add", "f")
	gitIn(t, work, "commit", "-qm", "one")
	gitIn(t, work, "push", "-q", "--receive-pack=git -c receive.unpackLimit=1 receive-pack", "file://"+primary, "HEAD:"+ref)
	commit = gitIn(t, work, "rev-parse", "HEAD")
	packs, _ := filepath.Glob(filepath.Join(primary, "objects", "pack", "pack-*.pack"))
	if len(packs) != 1 {
		t.Fatalf("the push left packs %v; want one", packs)
	}
	p.Name = strings.TrimSuffix(filepath.Base(packs[0]), ".pack")
	var err error
	if p.Pack, err = os.ReadFile(packs[0]); err != nil {
		t.Fatal(err)
	}
	if p.Index, err = os.ReadFile(strings.TrimSuffix(packs[0], ".pack") + ".idx"); err != nil {
		t.Fatal(err)
	}
	return p, commit, follower
}

// batchStep is one step of fileBatch.commit, as its hook saw it.
type batchStep struct{ step, path string }

// stepLog records a batch's steps; fail, when set, fails the steps it
// returns an error for.
type stepLog struct {
	mu    sync.Mutex
	steps []batchStep
	fail  func(step, path string) error
}

func (l *stepLog) hook(step, path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steps = append(l.steps, batchStep{step, path})
	if l.fail != nil {
		return l.fail(step, path)
	}
	return nil
}

// paths returns the paths of the steps of kind step, in the order taken.
func (l *stepLog) paths(step string) []string {
	var out []string
	for _, s := range l.steps {
		if s.step == step {
			out = append(out, s.path)
		}
	}
	return out
}

// install writes pack p and the ref changes into the bare repo at dir as
// moveRefs's fast path does, with log watching the batch.
func install(t *testing.T, log *stepLog, dir string, p Pack, changes ...RefChange) error {
	t.Helper()
	if _, err := checkPacks([]Pack{p}); err != nil {
		t.Fatal(err)
	}
	b := fileBatch{hook: log.hook}
	err := addPacks(&b, dir, []Pack{p})
	if err == nil {
		err = addLooseRefs(&b, dir, changes)
	}
	if err != nil {
		b.abort()
		return err
	}
	return b.commit()
}

// noLeftovers fails t if the batch left a temporary or lock file in dir.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(d.Name(), "tmp_fjord_") || strings.HasSuffix(d.Name(), ".lock")) {
			t.Errorf("the batch left %s behind", path)
		}
		return err
	})
}

// TestFileBatchSyncsFilesBeforeRenamesAndDirectoriesAfter: every file is
// fsynced under its temporary name before any is renamed, so no power
// loss can keep a ref whose pack is empty; the renames go pack, index,
// ref; the directories, each once, are fsynced after the last rename.
func TestFileBatchSyncsFilesBeforeRenamesAndDirectoriesAfter(t *testing.T) {
	p, commit, dir := sentPush(t, "refs/heads/main")
	var log stepLog
	if err := install(t, &log, dir, p, RefChange{Ref: "refs/heads/main", New: commit}); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(dir, "objects", "pack", p.Name)
	ref := filepath.Join(dir, "refs", "heads", "main")
	if got, want := log.paths(stepRename), []string{final + ".pack", final + ".idx", ref}; !slices.Equal(got, want) {
		t.Errorf("renamed %q; want %q, in that order", got, want)
	}
	if got, want := sorted(log.paths(stepFsync)), sorted(log.paths(stepRename)); !slices.Equal(got, want) {
		t.Errorf("fsynced files %q; want every file renamed, %q", got, want)
	}
	last := map[string]int{}
	first := map[string]int{}
	for i, s := range log.steps {
		if _, ok := first[s.step]; !ok {
			first[s.step] = i
		}
		last[s.step] = i
	}
	if last[stepFsync] > first[stepRename] || last[stepRename] > first[stepFsyncDir] {
		t.Errorf("steps %v; want every file's fsync, then the renames, then the directories' fsyncs", log.steps)
	}
	dirs := log.paths(stepFsyncDir)
	for _, d := range []string{filepath.Dir(final), filepath.Dir(ref)} {
		if !slices.Contains(dirs, d) {
			t.Errorf("fsynced directories %q; want %s among them", dirs, d)
		}
	}
	if len(slices.Compact(sorted(dirs))) != len(dirs) {
		t.Errorf("fsynced directories %q; want each once", dirs)
	}
	if got := gitIn(t, dir, "rev-parse", "refs/heads/main"); got != commit {
		t.Errorf("refs/heads/main is %s; want %s", got, commit)
	}
	gitIn(t, dir, "fsck", "--full", "--no-dangling")
	noLeftovers(t, dir)
}

// TestFileBatchFailedFsyncMovesNothing: when an fsync fails (EIO), no
// file has been renamed yet: the ref is not there to outlive the pack,
// the temporary files are gone, and the change applies on a retry.
func TestFileBatchFailedFsyncMovesNothing(t *testing.T) {
	p, commit, dir := sentPush(t, "refs/heads/main")
	final := filepath.Join(dir, "objects", "pack", p.Name)
	log := stepLog{fail: func(step, path string) error {
		if step == stepFsync && path == final+".pack" {
			return syscall.EIO
		}
		return nil
	}}
	change := RefChange{Ref: "refs/heads/main", New: commit}
	if err := install(t, &log, dir, p, change); !errors.Is(err, syscall.EIO) {
		t.Fatalf("install with a failing fsync: err = %v; want EIO", err)
	}
	if renamed := log.paths(stepRename); len(renamed) > 0 {
		t.Errorf("renamed %q although an fsync failed", renamed)
	}
	for _, path := range []string{final + ".pack", final + ".idx", filepath.Join(dir, "refs", "heads", "main")} {
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("%s is in place although the batch's fsync failed", path)
		}
	}
	noLeftovers(t, dir)

	if err := install(t, &stepLog{}, dir, p, change); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := gitIn(t, dir, "rev-parse", "refs/heads/main"); got != commit {
		t.Errorf("after the retry refs/heads/main is %s; want %s", got, commit)
	}
	gitIn(t, dir, "fsck", "--full", "--no-dangling")
}

// TestNewRefDirectoriesAreSynced: a ref in directories that do not exist
// yet has every directory it needed fsynced after the renames, the one
// that holds the first new directory too, so an acked new branch cannot
// vanish with its directory; so has a new ref in directories an earlier,
// killed attempt made; and objects/, when objects/pack had to be made.
func TestNewRefDirectoriesAreSynced(t *testing.T) {
	const name = "refs/heads/team/feature/x"
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
	}{
		{"new directories", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "objects", "pack")); err != nil {
				t.Fatal(err)
			}
		}},
		{"directories left by a killed attempt", func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, "refs", "heads", "team", "feature"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, commit, dir := sentPush(t, name)
			tc.prepare(t, dir)
			var log stepLog
			if err := install(t, &log, dir, p, RefChange{Ref: name, New: commit}); err != nil {
				t.Fatal(err)
			}
			heads := filepath.Join(dir, "refs", "heads")
			want := []string{heads, filepath.Join(heads, "team"), filepath.Join(heads, "team", "feature"), filepath.Join(dir, "objects", "pack")}
			if tc.name == "new directories" {
				want = append(want, filepath.Join(dir, "objects"))
			}
			dirs := log.paths(stepFsyncDir)
			for _, d := range want {
				if !slices.Contains(dirs, d) {
					t.Errorf("fsynced directories %q; want %s among them", dirs, d)
				}
			}
			if got := gitIn(t, dir, "rev-parse", name); got != commit {
				t.Errorf("%s is %s; want %s", name, got, commit)
			}
		})
	}
}

// TestPackInPlaceIsMadeDurable: a pack and index an earlier attempt
// renamed into place but may never have made durable (killed before its
// fsyncs, or an fsync that failed: Linux reports a writeback error only
// once) are written, fsynced and renamed again, and objects/pack fsynced,
// before the ref that needs them is moved.
func TestPackInPlaceIsMadeDurable(t *testing.T) {
	p, commit, dir := sentPush(t, "refs/heads/main")
	final := filepath.Join(dir, "objects", "pack", p.Name)
	if err := os.WriteFile(final+".pack", p.Pack, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(final+".idx", p.Index, 0o444); err != nil {
		t.Fatal(err)
	}
	var log stepLog
	if err := install(t, &log, dir, p, RefChange{Ref: "refs/heads/main", New: commit}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{stepFsync, stepRename} {
		for _, path := range []string{final + ".pack", final + ".idx"} {
			if !slices.Contains(log.paths(step), path) {
				t.Errorf("no %s of %s, a pack in place before the batch; steps %v", step, path, log.steps)
			}
		}
	}
	if !slices.Contains(log.paths(stepFsyncDir), filepath.Dir(final)) {
		t.Errorf("%s not fsynced; steps %v", filepath.Dir(final), log.steps)
	}
	gitIn(t, dir, "fsck", "--full", "--no-dangling")
}

// TestDamagedPackInPlaceIsReplaced: a pack of the right name, size and
// trailer whose middle is zeros (a page lost to a crash) is not taken
// for the pack sent: the pack in place afterwards is the one sent.
func TestDamagedPackInPlaceIsReplaced(t *testing.T) {
	p, commit, dir := sentPush(t, "refs/heads/main")
	final := filepath.Join(dir, "objects", "pack", p.Name)
	damaged := bytes.Clone(p.Pack)
	clear(damaged[12 : len(damaged)-20]) // all but the header and trailer
	if err := os.WriteFile(final+".pack", damaged, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(final+".idx", p.Index, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := install(t, &stepLog{}, dir, p, RefChange{Ref: "refs/heads/main", New: commit}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(final + ".pack"); err != nil || !bytes.Equal(got, p.Pack) {
		t.Fatalf("%s.pack is not the pack sent after the batch (err %v)", p.Name, err)
	}
	gitIn(t, dir, "fsck", "--full", "--no-dangling")
}

// TestCheckPackVerifiesIndex: an index whose own checksum does not match
// (a flipped CRC, which only checksums can catch), that is another
// pack's, or that has bytes after its end is refused with an error
// naming the file.
func TestCheckPackVerifiesIndex(t *testing.T) {
	p, _, _ := sentPush(t, "refs/heads/main")
	if _, err := checkPack(p); err != nil {
		t.Fatalf("checkPack of a whole pack: %v", err)
	}
	// Version 2: header (8 bytes), fan-out (256 × 4), names (n × 20), CRCs.
	n := int(binary.BigEndian.Uint32(p.Index[8+255*4:]))
	crcs := 8 + 256*4 + n*20
	flipped := p
	flipped.Index = bytes.Clone(p.Index)
	flipped.Index[crcs] ^= 0xff
	other, _, _ := sentPush(t, "refs/heads/other")
	foreign := p
	foreign.Index = other.Index
	// Bytes after the index that end as an index does, the pack's
	// checksum and then their own: the decoder stops before them, git
	// reads its checksums at the file's end.
	trailing := p
	trailing.Index = append(bytes.Clone(p.Index), p.Pack[len(p.Pack)-sha1.Size:]...)
	sum := sha1.Sum(trailing.Index)
	trailing.Index = append(trailing.Index, sum[:]...)
	for what, bad := range map[string]Pack{"a flipped CRC": flipped, "another pack's index": foreign, "bytes after the index": trailing} {
		_, err := checkPack(bad)
		if err == nil {
			t.Errorf("checkPack of %s: no error", what)
			continue
		}
		if !strings.Contains(err.Error(), p.Name+".idx") {
			t.Errorf("checkPack of %s: %q does not name %s.idx", what, err, p.Name)
		}
	}
}

// TestSymbolicRefIsLeftToGit: a loose ref that is a symbolic ref (a file
// holding "ref: ...") is never overwritten with a hash; the change goes
// to git's ref transaction, and the ref is untouched.
func TestSymbolicRefIsLeftToGit(t *testing.T) {
	p, commit, dir := sentPush(t, "refs/heads/main")
	alias := filepath.Join(dir, "refs", "heads", "alias")
	const sym = "ref: refs/heads/main\n"
	if err := os.WriteFile(alias, []byte(sym), 0o644); err != nil {
		t.Fatal(err)
	}
	err := install(t, &stepLog{}, dir, p, RefChange{Ref: "refs/heads/alias", New: commit})
	if !errors.Is(err, errNeedsGit) {
		t.Fatalf("an update of a symbolic ref: err = %v; want errNeedsGit", err)
	}
	if got, _ := os.ReadFile(alias); string(got) != sym {
		t.Errorf("the symbolic ref holds %q; want %q", got, sym)
	}
	noLeftovers(t, dir)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// BenchmarkFastPathInstall measures the follower's fast path alone:
// installing a small push's pack and moving one ref, durably (the
// batch's fsyncs), as moveRefs does for every change sent with its pack.
//
//	go test -run '^$' -bench FastPathInstall -benchtime 500x ./storage/
func BenchmarkFastPathInstall(b *testing.B) {
	p, commit, dir := sentPush(b, "refs/heads/main")
	final := filepath.Join(dir, "objects", "pack", p.Name)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		os.Remove(final + ".pack") // a new pack each time, as on every push
		os.Remove(final + ".idx")
		b.StartTimer()
		var batch fileBatch
		err := addPacks(&batch, dir, []Pack{p})
		if err == nil {
			err = addLooseRefs(&batch, dir, []RefChange{{Ref: "refs/heads/main", New: commit}})
		}
		if err == nil {
			err = batch.commit()
		} else {
			batch.abort()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
