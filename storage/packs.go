package storage

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"golang.org/x/sync/errgroup"
)

// A synchronous follower that fetched every push's objects with git (a
// fetch over SSH, the primary's upload-pack and pack-objects, its own
// index-pack) spent tens of milliseconds in process start-ups per push,
// all of it added to the push. Pushes are kept as the pack they arrived in
// (receive-pack with unpackLimit 1), so the primary can instead send that
// pack and its index along with the change, and the follower drops both
// into its objects/pack as git itself would: no git process at all.
//
// Which packs a change brought is known without asking git: the store
// remembers, per repo, the packs it has seen, and RefreshRefs records the
// ones that appeared since (Change.Packs). A pack of a concurrent push
// may go with an earlier change than its own; that only sends it sooner.
// Housekeeping's packs are not new objects and are marked seen when it
// lets go of the repo. Whatever a change's packs do not hold (they were
// repacked away, were too big to send, or the change came from an older
// primary) is fetched with git as before.

// MaxInlinePackBytes bounds the packs and indexes sent with one change;
// a bigger push is fetched by the follower with git, which streams.
const MaxInlinePackBytes = 8 << 20

// Pack is one pack file and its index, as a change sends them.
type Pack struct {
	// Name is the pack's base name in objects/pack: "pack-" and its hash.
	Name  string `json:"name"`
	Pack  []byte `json:"pack"`
	Index []byte `json:"index"`
}

// packName matches the packs of a SHA-1 repo, the only kind fjord
// creates; checkPack's checksum is SHA-1 too.
var packName = regexp.MustCompile(`^pack-[0-9a-f]{40}$`)

// packSet is the packs seen per repo; a repo missing from it has not been
// looked at since the store opened.
type packSet struct {
	mu   sync.Mutex
	seen map[string]map[string]bool
}

// listPacks returns the complete packs of a repo: those whose index is
// written (git writes the index last, so its pack is whole).
func (s *Store) listPacks(repo string) (map[string]bool, error) {
	entries, err := os.ReadDir(filepath.Join(s.RepoPath(repo), "objects", "pack"))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list packs of %q: %w", repo, err)
	}
	idx := map[string]bool{}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".idx"); ok && packName.MatchString(name) {
			idx[name] = true
		}
	}
	out := map[string]bool{}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".pack"); ok && idx[name] {
			out[name] = true
		}
	}
	return out, nil
}

// newPacks returns the packs of repo that appeared since it last looked,
// and from now on counts them as seen. The first look at a repo after the
// store opened sees nothing new: what was there is not known to be new.
func (s *Store) newPacks(repo string) []string {
	now, err := s.listPacks(repo)
	if err != nil {
		s.log.Warn("list a repo's packs (a follower fetches them with git instead)", "repo", repo, "err", err)
		return nil
	}
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	if s.packs.seen == nil {
		s.packs.seen = map[string]map[string]bool{}
	}
	before, known := s.packs.seen[repo]
	s.packs.seen[repo] = now
	if !known {
		return nil
	}
	var fresh []string
	for name := range now {
		if !before[name] {
			fresh = append(fresh, name)
		}
	}
	return fresh
}

// markPacksSeen counts every pack repo holds now as seen; empty says the
// repo was just created and holds none.
func (s *Store) markPacksSeen(repo string, empty bool) {
	now := map[string]bool{}
	if !empty {
		var err error
		if now, err = s.listPacks(repo); err != nil {
			s.log.Warn("list a repo's packs", "repo", repo, "err", err)
			s.forgetPacks(repo) // looked at afresh next time
			return
		}
	}
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	if s.packs.seen == nil {
		s.packs.seen = map[string]map[string]bool{}
	}
	s.packs.seen[repo] = now
}

func (s *Store) forgetPacks(repo string) {
	s.packs.mu.Lock()
	defer s.packs.mu.Unlock()
	delete(s.packs.seen, repo)
}

// ChangePacks reads the packs c brought, to send with it. It returns
// none when they are together bigger than MaxInlinePackBytes or one is
// gone (housekeeping repacked it): the follower then fetches with git.
func (s *Store) ChangePacks(c Change) []Pack {
	if c.Repo == "" || len(c.Packs) == 0 {
		return nil
	}
	dir := filepath.Join(s.RepoPath(c.Repo), "objects", "pack")
	// Sizes first: a big push's pack is never read into memory.
	var total int64
	for _, name := range c.Packs {
		if !packName.MatchString(name) {
			return nil
		}
		for _, ext := range []string{".pack", ".idx"} {
			fi, err := os.Stat(filepath.Join(dir, name+ext))
			if err != nil {
				return nil
			}
			if total += fi.Size(); total > MaxInlinePackBytes {
				return nil
			}
		}
	}
	out := make([]Pack, 0, len(c.Packs))
	for _, name := range c.Packs {
		pack, err := os.ReadFile(filepath.Join(dir, name+".pack"))
		if err != nil {
			return nil
		}
		idx, err := os.ReadFile(filepath.Join(dir, name+".idx"))
		if err != nil {
			return nil
		}
		out = append(out, Pack{Name: name, Pack: pack, Index: idx})
	}
	return out
}

// checkPack verifies that p is a whole pack with its own index: the
// pack's trailer is the SHA-1 of what precedes it, the index's trailer
// the SHA-1 of what precedes that, and the index names the pack's
// checksum. A pack or index cut short or damaged in transit fails here,
// before anything is written. The index's checksum is checked here over
// the bytes that will be the file, whatever the decoder checks of what
// it reads: git reads the checksums at the file's end.
func checkPack(p Pack) (*idxfile.MemoryIndex, error) {
	if !packName.MatchString(p.Name) {
		return nil, fmt.Errorf("pack name %q is not pack-<hash>", p.Name)
	}
	if len(p.Pack) < 32 || !bytes.HasPrefix(p.Pack, []byte("PACK")) {
		return nil, fmt.Errorf("%s.pack is not a pack (%d bytes)", p.Name, len(p.Pack))
	}
	body, trailer := p.Pack[:len(p.Pack)-sha1.Size], p.Pack[len(p.Pack)-sha1.Size:]
	if sum := sha1.Sum(body); !bytes.Equal(sum[:], trailer) {
		return nil, fmt.Errorf("%s.pack is damaged or cut short: its checksum does not match", p.Name)
	}
	n := len(p.Index)
	if n < 2*sha1.Size {
		return nil, fmt.Errorf("%s.idx is not an index (%d bytes)", p.Name, n)
	}
	if sum := sha1.Sum(p.Index[:n-sha1.Size]); !bytes.Equal(sum[:], p.Index[n-sha1.Size:]) {
		return nil, fmt.Errorf("%s.idx is damaged or cut short: its checksum does not match", p.Name)
	}
	if named := p.Index[n-2*sha1.Size : n-sha1.Size]; !bytes.Equal(named, trailer) {
		return nil, fmt.Errorf("%s.idx is not the index of %s.pack: it names pack %x, the pack's checksum is %x", p.Name, p.Name, named, trailer)
	}
	idx := idxfile.NewMemoryIndex()
	r := bytes.NewReader(p.Index)
	if err := idxfile.NewDecoder(r).Decode(idx); err != nil {
		return nil, fmt.Errorf("%s.idx: %w", p.Name, err)
	}
	if r.Len() > 0 { // the checksums checked above are not the ones decoded
		return nil, fmt.Errorf("%s.idx has %d bytes after its end", p.Name, r.Len())
	}
	return idx, nil
}

// checkPacks checks every pack (see checkPack) and returns their indexes.
func checkPacks(packs []Pack) ([]*idxfile.MemoryIndex, error) {
	idxs := make([]*idxfile.MemoryIndex, 0, len(packs))
	for _, p := range packs {
		idx, err := checkPack(p)
		if err != nil {
			return nil, err
		}
		idxs = append(idxs, idx)
	}
	return idxs, nil
}

// addPacks adds packs to b, to go into the bare repo at dir: each pack
// before its index, since git finds packs by their index.
//
// A pack already in place under its name is written again all the same.
// It is there because an earlier attempt renamed it and then failed or
// was killed, which may have been before its data was durable; an fsync
// of it now would not say it is, since Linux reports a failed writeback
// only once, and comparing it with the pack sent would read it whole.
// Git names a pack by its checksum, so the pack replaced is this one or a
// damaged copy, and a reader holding it open keeps reading it.
func addPacks(b *fileBatch, dir string, packs []Pack) error {
	packDir := filepath.Join(dir, "objects", "pack")
	if err := b.mkdirAll(packDir); err != nil {
		return fmt.Errorf("install packs: %w", err)
	}
	for _, p := range packs {
		if !packName.MatchString(p.Name) { // a name that would leave packDir
			return fmt.Errorf("install packs: pack name %q is not pack-<hash>", p.Name)
		}
		final := filepath.Join(packDir, p.Name)
		if err := b.add(final+".pack", p.Pack, 0o444, false); err != nil {
			return err
		}
		if err := b.add(final+".idx", p.Index, 0o444, false); err != nil {
			return err
		}
	}
	return nil
}

// fileBatch writes files durably together, in git's order and in as few
// rounds of fsyncs as that order allows. Every file is written under a
// temporary name, and all are fsynced at once; only then are they
// renamed into place, in the order added; then the directories the
// renames changed, and those that hold a directory the batch made, are
// fsynced at once. A synchronous follower waits for this on every push:
// two rounds cost two fsync latencies, where fsyncing each file and
// directory in turn would cost one per file and directory.
//
// Data before names: a power loss at any point leaves either the old
// name or a new name with its data whole, never a ref that survived its
// pack being lost (which makes git's for-each-ref, and so storage.Open,
// fail on the missing object). The renames are made in order, and the
// filesystems fjord runs on (ext4, XFS) commit them to their journal in
// that order, so a ref that survives a power loss before the directory
// fsyncs comes with its pack's name. Until commit returns, the change is
// not acked and its position not written; applied again, it writes every
// file of the batch again.
type fileBatch struct {
	items []batchItem
	// dirs are the directories to fsync after the renames, besides those
	// holding the items: made by mkdirAll, or holding one it made.
	dirs map[string]bool
	// hook, when set (by tests only), is called before each step of
	// commit with the step (stepFsync, stepRename, stepFsyncDir) and the
	// file or directory it is for; an error it returns fails the step as
	// the system call's would. The fsyncs of a round call it concurrently.
	hook func(step, path string) error
}

// The steps of fileBatch.commit, as its hook sees them.
const (
	stepFsync    = "fsync"     // a file, named by its final path
	stepRename   = "rename"    // a file moved to its final path
	stepFsyncDir = "fsync dir" // a directory
)

// step calls the test hook, if any, before the step named.
func (b *fileBatch) step(step, path string) error {
	if b.hook == nil {
		return nil
	}
	return b.hook(step, path)
}

type batchItem struct {
	tmp, final string
	f          *os.File
}

// syncDirAfter has commit fsync dir after its renames.
func (b *fileBatch) syncDirAfter(dir string) {
	if b.dirs == nil {
		b.dirs = map[string]bool{}
	}
	b.dirs[dir] = true
}

// mkdirAll is os.MkdirAll for a batch: the directories it makes are
// durable once commit returns, since commit fsyncs the directory holding
// each (a new directory's own entries are fsynced as its files' are).
func (b *fileBatch) mkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := b.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		// Made meanwhile by another: then as good as made here.
		if fi, serr := os.Lstat(dir); serr != nil || !fi.IsDir() {
			return err
		}
	}
	b.syncDirAfter(parent)
	return nil
}

// add writes data to a temporary file for final: with lock, final's git
// lock file (final.lock, created exclusively: errNeedsGit when git holds
// it), else a tmp_ file beside it, which git's cleanups know as a
// leftover.
func (b *fileBatch) add(final string, data []byte, mode os.FileMode, lock bool) error {
	var f *os.File
	var err error
	if lock {
		f, err = os.OpenFile(final+".lock", os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			return errNeedsGit
		}
	} else {
		f, err = os.CreateTemp(filepath.Dir(final), "tmp_fjord_")
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", final, err)
	}
	b.items = append(b.items, batchItem{tmp: f.Name(), final: final, f: f})
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", final, err)
	}
	if !lock {
		if err := f.Chmod(mode); err != nil {
			return fmt.Errorf("write %s: %w", final, err)
		}
	}
	return nil
}

// abort removes the temporary files add wrote and commit did not rename.
func (b *fileBatch) abort() {
	for _, it := range b.items {
		it.f.Close()
		if it.tmp != "" {
			os.Remove(it.tmp)
		}
	}
	b.items = nil
}

// commit makes the batch's files durable and moves them into place:
// fsyncs of every file, then the renames, then fsyncs of the directories.
// An error leaves the files not yet renamed under their temporary names,
// which it removes: after a failed fsync, no file has moved.
func (b *fileBatch) commit() error {
	defer b.abort()
	var files errgroup.Group
	for _, it := range b.items {
		files.Go(func() error {
			if err := b.step(stepFsync, it.final); err != nil {
				return fmt.Errorf("fsync %s: %w", it.final, err)
			}
			if err := it.f.Sync(); err != nil {
				return fmt.Errorf("fsync %s: %w", it.final, err)
			}
			return nil
		})
	}
	if err := files.Wait(); err != nil {
		return err
	}
	for i := range b.items {
		it := &b.items[i]
		if err := b.step(stepRename, it.final); err != nil {
			return fmt.Errorf("move %s into place: %w", it.final, err)
		}
		if err := os.Rename(it.tmp, it.final); err != nil {
			return fmt.Errorf("move %s into place: %w", it.final, err)
		}
		it.tmp = "" // renamed: abort leaves it
		b.syncDirAfter(filepath.Dir(it.final))
	}
	var dirs errgroup.Group
	for d := range b.dirs {
		dirs.Go(func() error {
			if err := b.step(stepFsyncDir, d); err != nil {
				return fmt.Errorf("fsync %s: %w", d, err)
			}
			return syncDir(d)
		})
	}
	return dirs.Wait()
}

// packsHold reports whether the indexes hold every object in wants.
func packsHold(idxs []*idxfile.MemoryIndex, wants []string) bool {
	for _, w := range wants {
		if !plumbing.IsHash(w) {
			return false
		}
		h := plumbing.NewHash(w)
		found := false
		for _, idx := range idxs {
			if has, err := idx.Contains(h); err == nil && has {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// plainRef matches the ref names addLooseRefs writes itself: a subset
// of what git allows, with none of the cases git's rules exist for
// (dots leading a component, "..", ".lock", control characters).
var plainRef = regexp.MustCompile(`^refs/([A-Za-z0-9_+@-][A-Za-z0-9._+@-]*/)*[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*$`)

// errNeedsGit says a ref change is one addLooseRefs leaves to git.
var errNeedsGit = errors.New("needs git's ref transaction")

// addLooseRefs adds to b the moves of refs as git's files backend makes
// them, without a git process: a lock file per ref, created exclusively
// and written, which commit fsyncs and renames over the ref. A loose ref
// overrides a packed one, so updates never touch packed-refs. It returns
// errNeedsGit for what it leaves to git: a delete, a name outside
// plainRef, a ref git holds locked, a symbolic ref (which git's
// transaction updates through), a ref that is a directory or sits under
// a file.
func addLooseRefs(b *fileBatch, dir string, changes []RefChange) error {
	for _, c := range changes {
		if c.New == "" || !plainRef.MatchString(c.Ref) || strings.HasSuffix(c.Ref, ".lock") ||
			strings.Contains(c.Ref, "..") || strings.Contains(c.Ref, "./") || strings.HasSuffix(c.Ref, ".") ||
			!plumbing.IsHash(c.New) {
			return errNeedsGit
		}
		ref := filepath.Join(dir, filepath.FromSlash(c.Ref))
		fi, err := os.Lstat(ref)
		switch {
		case err == nil && !fi.Mode().IsRegular():
			return errNeedsGit // a directory of refs, or a symbolic link
		case err == nil:
			if sym, err := isSymref(ref); err != nil || sym {
				return errNeedsGit
			}
		case errors.Is(err, fs.ErrNotExist):
			// A new ref: the directories up to refs/ may be ones an
			// earlier attempt made and was killed before it fsynced
			// what holds them; so they are fsynced again.
			refs := filepath.Join(dir, "refs") // plainRef: c.Ref is under it
			for d := filepath.Dir(ref); d != refs && strings.HasPrefix(d, refs); d = filepath.Dir(d) {
				b.syncDirAfter(filepath.Dir(d))
			}
		default:
			return errNeedsGit // under a file, or unreadable: git says which
		}
		if err := b.mkdirAll(filepath.Dir(ref)); err != nil {
			return errNeedsGit // a ref where a directory of refs should be
		}
		if err := b.add(ref, []byte(c.New+"\n"), 0o644, true); err != nil {
			return err
		}
	}
	return nil
}

// isSymref reports whether the loose ref file at path is a symbolic ref.
func isSymref(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len("ref:"))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	return string(head[:n]) == "ref:", nil
}

// applied returns r with changes made and HEAD pointing at head (kept
// when empty): the refs a repo holds after writeLooseRefs, without
// reading them back from disk.
func (r *Refs) applied(changes []RefChange, head string) *Refs {
	next := &Refs{Head: r.Head, HeadHash: r.HeadHash, Read: time.Now().UTC()}
	if head != "" {
		next.Head = head
	}
	shown := map[string]RefChange{}
	hidden := map[string]RefChange{}
	for _, c := range changes {
		if strings.HasPrefix(c.Ref, HiddenRefPrefix) {
			hidden[c.Ref] = c
		} else {
			shown[c.Ref] = c
		}
	}
	next.Refs = applyList(r.Refs, shown)
	next.Hidden = applyList(r.Hidden, hidden)
	if next.Head != "" { // else detached: HeadHash stays
		next.HeadHash = ""
		if h, ok := next.Lookup(next.Head); ok {
			next.HeadHash = h.Hash
		}
	}
	return next
}

// applyList returns list with changes (by ref) made, sorted by name.
func applyList(list []Ref, changes map[string]RefChange) []Ref {
	out := make([]Ref, 0, len(list)+len(changes))
	for _, ref := range list {
		c, ok := changes[ref.Name]
		if !ok {
			out = append(out, ref)
			continue
		}
		delete(changes, ref.Name)
		if c.New != "" {
			out = append(out, Ref{Name: ref.Name, Hash: c.New, Peeled: c.Peeled})
		}
	}
	for _, c := range changes {
		if c.New != "" {
			out = append(out, Ref{Name: c.Ref, Hash: c.New, Peeled: c.Peeled})
		}
	}
	slices.SortFunc(out, func(a, b Ref) int { return strings.Compare(a.Name, b.Name) })
	return out
}
