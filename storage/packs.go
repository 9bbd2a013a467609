package storage

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
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
// pack's trailer is the SHA-1 of what precedes it, and the index names
// that same checksum. A pack cut short in transit fails here, before
// anything is written.
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
	if len(p.Index) < 2*sha1.Size || !bytes.Equal(p.Index[len(p.Index)-2*sha1.Size:len(p.Index)-sha1.Size], trailer) {
		return nil, fmt.Errorf("%s.idx is not the index of %s.pack", p.Name, p.Name)
	}
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(bytes.NewReader(p.Index)).Decode(idx); err != nil {
		return nil, fmt.Errorf("%s.idx: %w", p.Name, err)
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
func addPacks(b *fileBatch, dir string, packs []Pack) error {
	packDir := filepath.Join(dir, "objects", "pack")
	if err := os.MkdirAll(packDir, 0o755); err != nil {
		return fmt.Errorf("install packs: %w", err)
	}
	for _, p := range packs {
		final := filepath.Join(packDir, p.Name)
		if installed(final, p) {
			continue // by an earlier attempt
		}
		if err := b.add(final+".pack", p.Pack, 0o444, false); err != nil {
			return err
		}
		if err := b.add(final+".idx", p.Index, 0o444, false); err != nil {
			return err
		}
	}
	return nil
}

// installed reports whether the pack at final (no suffix) is p, whole:
// an attempt cut short by a crash may have left files of the right names
// that are not.
func installed(final string, p Pack) bool {
	fi, err := os.Stat(final + ".pack")
	if err != nil || fi.Size() != int64(len(p.Pack)) {
		return false
	}
	idx, err := os.ReadFile(final + ".idx")
	if err != nil || !bytes.Equal(idx, p.Index) {
		return false
	}
	f, err := os.Open(final + ".pack")
	if err != nil {
		return false
	}
	defer f.Close()
	trailer := make([]byte, sha1.Size)
	_, err = f.ReadAt(trailer, fi.Size()-sha1.Size)
	return err == nil && bytes.Equal(trailer, p.Pack[len(p.Pack)-sha1.Size:])
}

// fileBatch writes files durably together in one round of fsyncs: every
// file is written under a temporary name, all are renamed into place in
// the order added, and then the files and their directories are fsynced
// at once. A synchronous follower waits for this on every push, and an
// fsync's latency is what it would otherwise pay once per file and again
// per directory. Until commit returns nothing is durable, which is safe
// because nothing durable depends on it yet: the change's position is
// written after, and a change applied again rewrites every file.
type fileBatch struct {
	items []batchItem
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

// commit renames the batch's files into place and makes them durable.
func (b *fileBatch) commit() error {
	defer b.abort()
	dirs := map[string]bool{}
	for i := range b.items {
		it := &b.items[i]
		if err := b.step(stepRename, it.final); err != nil {
			return fmt.Errorf("move %s into place: %w", it.final, err)
		}
		if err := os.Rename(it.tmp, it.final); err != nil {
			return fmt.Errorf("move %s into place: %w", it.final, err)
		}
		it.tmp = "" // renamed: abort leaves it
		dirs[filepath.Dir(it.final)] = true
	}
	var g errgroup.Group
	for _, it := range b.items {
		g.Go(func() error {
			if err := b.step(stepFsync, it.final); err != nil {
				return fmt.Errorf("fsync %s: %w", it.final, err)
			}
			if err := it.f.Sync(); err != nil {
				return fmt.Errorf("fsync %s: %w", it.final, err)
			}
			return nil
		})
	}
	for d := range dirs {
		g.Go(func() error {
			if err := b.step(stepFsyncDir, d); err != nil {
				return fmt.Errorf("fsync %s: %w", d, err)
			}
			return syncDir(d)
		})
	}
	return g.Wait()
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
// plainRef, a ref git holds locked, a ref that is a directory or sits
// under a file.
func addLooseRefs(b *fileBatch, dir string, changes []RefChange) error {
	for _, c := range changes {
		if c.New == "" || !plainRef.MatchString(c.Ref) || strings.HasSuffix(c.Ref, ".lock") ||
			strings.Contains(c.Ref, "..") || strings.Contains(c.Ref, "./") || strings.HasSuffix(c.Ref, ".") ||
			!plumbing.IsHash(c.New) {
			return errNeedsGit
		}
		ref := filepath.Join(dir, filepath.FromSlash(c.Ref))
		if fi, err := os.Stat(ref); err == nil && fi.IsDir() {
			return errNeedsGit
		}
		if err := os.MkdirAll(filepath.Dir(ref), 0o755); err != nil {
			return errNeedsGit // a ref where a directory of refs should be
		}
		if err := b.add(ref, []byte(c.New+"\n"), 0o644, true); err != nil {
			return err
		}
	}
	return nil
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
