package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fjordhq/fjord/internal/gitrun"
	bolt "go.etcd.io/bbolt"
)

// FetchFunc brings the objects named by wants (and what they reach) into
// the bare repository dir of repo, from wherever the change came from (the
// primary). ApplyChange and ApplySnapshot call it before they move refs.
type FetchFunc func(ctx context.Context, repo, dir string, wants []string) error

// ApplyChange makes raw, a change read from the primary's log, this
// store's change at the same position: the credential files it writes
// get their content from files (the primary's ChangeFiles of it),
// repos it creates are created, the
// objects of the refs it moves are fetched with fetch, the refs move in
// one git ref transaction, and then the metadata it wrote, the new ref
// snapshot, the change itself and the position are written in one bbolt
// transaction. A crash anywhere leaves the position before the change, and
// applying it again is harmless. The change must be the one after
// Position(), else ErrPositionGap.
func (s *Store) ApplyChange(ctx context.Context, raw []byte, files map[string][]byte, packs []Pack, fetch FetchFunc) (Change, error) {
	c, err := decodeChange(raw)
	if err != nil {
		return Change{}, err
	}
	if pos := s.Position(); c.Pos != pos+1 {
		return Change{}, fmt.Errorf("apply change %d at position %d: %w", c.Pos, pos, ErrPositionGap)
	}
	created, deleted := s.reposTouched(c.Ops)
	for _, name := range created {
		if _, err := os.Stat(s.RepoPath(name)); err == nil {
			continue // a previous attempt made it
		}
		if err := s.initRepoDir(ctx, name); err != nil {
			return Change{}, fmt.Errorf("apply change %d: %w", c.Pos, err)
		}
	}

	// Files first: written again harmlessly if the transaction below
	// never commits.
	for _, op := range c.Ops {
		if op.File != "" {
			if err := s.applyFileOp(op, files); err != nil {
				return Change{}, fmt.Errorf("apply change %d: %w", c.Pos, err)
			}
		}
	}
	var next *Refs
	if c.Repo != "" {
		// Housekeeping does not repack while objects arrive, as for a push.
		defer s.BeginRepoWrite(c.Repo)()
		lock := s.repoLock(c.Repo)
		lock.Lock()
		defer lock.Unlock()
		if next, err = s.moveRefs(ctx, c.Repo, c.Head, c.Refs, packs, fetch); err != nil {
			return Change{}, fmt.Errorf("apply change %d: %w", c.Pos, err)
		}
	}
	// A new repo's snapshot lives in memory until its refs first move,
	// as CreateRepo leaves it.
	fresh := map[string]*Refs{}
	for _, name := range created {
		if name == c.Repo {
			continue
		}
		r, err := s.readRefs(ctx, name)
		if err != nil {
			return Change{}, fmt.Errorf("apply change %d: %w", c.Pos, err)
		}
		fresh[name] = r
	}
	snaps := map[string]*Refs{}
	if next != nil {
		snaps[c.Repo] = next
	}

	err = s.db.Update(func(tx *bolt.Tx) error {
		if pos := readPosition(tx); c.Pos != pos+1 {
			return fmt.Errorf("apply change %d at position %d: %w", c.Pos, pos, ErrPositionGap)
		}
		for _, op := range c.Ops {
			if err := applyOp(tx, op); err != nil {
				return fmt.Errorf("apply change %d: %w", c.Pos, err)
			}
		}
		for name, r := range snaps {
			if err := putSnapshot(tx, name, r); err != nil {
				return err
			}
		}
		for _, name := range deleted {
			if err := tx.Bucket(bucketRefs).Delete([]byte(name)); err != nil {
				return err
			}
		}
		return s.appendChange(tx, c.Pos, raw)
	})
	if err != nil {
		return Change{}, err
	}
	for name, r := range fresh {
		s.setRefs(name, r)
	}
	for name, r := range snaps {
		s.setRefs(name, r)
	}
	for _, name := range deleted {
		s.mu.Lock()
		delete(s.refs, name)
		s.mu.Unlock()
		if err := s.removeRepoDir(name); err != nil {
			s.log.Error("remove a repo the primary deleted", "repo", name, "err", err)
		}
	}
	s.watch.set(c.Pos, sumOf(raw))
	for _, rc := range c.Refs {
		if !strings.HasPrefix(rc.Ref, HiddenRefPrefix) {
			s.notify.publish(rc)
		}
	}
	s.publishOps(c.Ops)
	return c, nil
}

// reposTouched lists the repos whose metadata ops create (not known here
// yet) or delete.
func (s *Store) reposTouched(ops []Op) (created, deleted []string) {
	s.db.View(func(tx *bolt.Tx) error {
		known := tx.Bucket(bucketRepos)
		for _, op := range ops {
			if op.Bucket != string(bucketRepos) || op.Nested != "" {
				continue
			}
			name := string(op.Key)
			switch {
			case op.Delete:
				deleted = append(deleted, name)
			case known.Get(op.Key) == nil:
				created = append(created, name)
			}
		}
		return nil
	})
	return created, deleted
}

func putSnapshot(tx *bolt.Tx, repo string, r *Refs) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode refs of %q: %w", repo, err)
	}
	return tx.Bucket(bucketRefs).Put([]byte(repo), raw)
}

// moveRefs brings in what changes need (packs, then fetch for anything
// they lack), moves the refs in one ref transaction, points HEAD at head,
// and returns the repo's refs.
//
// When packs hold every new ref target and the change only updates
// plainly named refs, no git process runs: the packs are installed and
// the refs written as git would, and the refs returned are the snapshot
// with the changes made. Otherwise git checks for the objects, fetches
// the missing ones, moves the refs, and the refs are read back from disk
// and checked against the changes.
func (s *Store) moveRefs(ctx context.Context, repo, head string, changes []RefChange, packs []Pack, fetch FetchFunc) (*Refs, error) {
	dir := s.RepoPath(repo)
	// Packs that arrived here are no news if this store is primary later.
	defer s.markPacksSeen(repo, false)
	var wants []string
	for _, c := range changes {
		if c.New != "" {
			wants = append(wants, c.New)
		}
	}
	// The fast path: packs that hold every new ref target, refs git
	// need not move; all written in one batch of fsyncs.
	held := false
	if len(packs) > 0 && len(wants) > 0 {
		idxs, err := checkPacks(packs)
		if err != nil {
			s.log.Warn("the packs sent with a change are unusable; fetching with git instead", "repo", repo, "err", err)
			packs = nil
		} else {
			held = packsHold(idxs, wants)
		}
	}
	if prev, ok := s.Refs(repo); held && ok && (head == "" || head == prev.Head) {
		var b fileBatch
		err := addPacks(&b, dir, packs)
		if err == nil {
			err = addLooseRefs(&b, dir, changes)
		}
		if err == nil {
			if err := b.commit(); err != nil {
				return nil, fmt.Errorf("move refs of %q: %w", repo, err)
			}
			return prev.applied(changes, head), nil
		}
		b.abort()
		if !errors.Is(err, errNeedsGit) {
			return nil, fmt.Errorf("install objects of %q: %w", repo, err)
		}
	}
	if len(packs) > 0 { // objects from the packs, refs by git
		var b fileBatch
		if err := addPacks(&b, dir, packs); err != nil {
			b.abort()
			return nil, fmt.Errorf("install objects of %q: %w", repo, err)
		}
		if err := b.commit(); err != nil {
			return nil, fmt.Errorf("install objects of %q: %w", repo, err)
		}
	}
	if !held {
		missing, err := s.missingObjects(ctx, dir, wants)
		if err != nil {
			return nil, err
		}
		if len(missing) > 0 {
			if fetch == nil {
				return nil, fmt.Errorf("repo %q lacks %d objects and no fetch was given", repo, len(missing))
			}
			if err := fetch(ctx, repo, dir, missing); err != nil {
				return nil, fmt.Errorf("fetch into %q: %w", repo, err)
			}
		}
	}
	if len(changes) > 0 {
		var in strings.Builder
		in.WriteString("start\n")
		for _, c := range changes {
			if c.New == "" {
				fmt.Fprintf(&in, "delete %s\n", c.Ref)
			} else {
				fmt.Fprintf(&in, "update %s %s\n", c.Ref, c.New)
			}
		}
		in.WriteString("prepare\ncommit\n")
		if _, err := s.gitOutputIn(ctx, dir, in.String(), "update-ref", "--stdin"); err != nil {
			return nil, fmt.Errorf("move refs of %q: %w", repo, err)
		}
	}
	if head != "" {
		cur, err := os.ReadFile(s.RepoPath(repo) + "/HEAD")
		if err != nil {
			return nil, fmt.Errorf("read HEAD of %q: %w", repo, err)
		}
		if strings.TrimSpace(string(cur)) != "ref: "+head {
			if err := s.runGit(ctx, dir, "symbolic-ref", "HEAD", head); err != nil {
				return nil, fmt.Errorf("set HEAD of %q: %w", repo, err)
			}
		}
	}
	next, err := s.readRefs(ctx, repo)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		r, ok := next.lookupAny(c.Ref)
		if (c.New == "" && ok) || (c.New != "" && r.Hash != c.New) {
			return nil, fmt.Errorf("repo %q: %s is %q after the ref transaction, want %q", repo, c.Ref, r.Hash, c.New)
		}
	}
	return next, nil
}

// lookupAny finds a ref among the advertised and the hidden ones.
func (r *Refs) lookupAny(name string) (Ref, bool) {
	if !strings.HasPrefix(name, HiddenRefPrefix) {
		return r.Lookup(name)
	}
	for _, h := range r.Hidden {
		if h.Name == name {
			return h, true
		}
	}
	return Ref{}, false
}

// missingObjects returns the objects of wants the repo at dir lacks.
func (s *Store) missingObjects(ctx context.Context, dir string, wants []string) ([]string, error) {
	if len(wants) == 0 {
		return nil, nil
	}
	out, err := s.gitOutputIn(ctx, dir, strings.Join(wants, "\n")+"\n", "cat-file", "--batch-check=%(objectname)")
	if err != nil {
		return nil, fmt.Errorf("check objects in %s: %w", dir, err)
	}
	var missing []string
	for _, line := range bytes.Split(out, []byte{'\n'}) {
		if name, ok := bytes.CutSuffix(line, []byte(" missing")); ok {
			missing = append(missing, string(name))
		}
	}
	return missing, nil
}

func (s *Store) gitOutputIn(ctx context.Context, dir, stdin string, args ...string) ([]byte, error) {
	return gitrun.Runner{Git: s.git}.Output(ctx, dir, strings.NewReader(stdin), args...)
}

// Snapshot is a consistent copy of a store's replicated state at one
// position: what a new follower, or one too far behind, starts from.
type Snapshot struct {
	// Pos and Sum are the position and the Sum of the change at it.
	Pos uint64 `json:"pos"`
	Sum string `json:"sum,omitempty"`
	// Ops put every key of every replicated bucket.
	Ops []Op `json:"ops"`
	// Refs are every repo's ref snapshot at Pos.
	Refs map[string]*Refs `json:"refs"`
}

// Snapshot reads the replicated state in one read transaction.
func (s *Store) Snapshot() (*Snapshot, error) {
	snap := &Snapshot{Refs: map[string]*Refs{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		snap.Pos = readPosition(tx)
		snap.Sum = string(tx.Bucket(bucketMeta).Get(keyPositionSum))
		if err := tx.Bucket(bucketRefs).ForEach(func(k, v []byte) error {
			var r Refs
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode refs of %q: %w", k, err)
			}
			snap.Refs[string(k)] = &r
			return nil
		}); err != nil {
			return err
		}
		return tx.ForEach(func(name []byte, top *bolt.Bucket) error {
			if localBuckets[string(name)] {
				return nil
			}
			return top.ForEach(func(k, v []byte) error {
				if v != nil {
					snap.Ops = append(snap.Ops, Op{Bucket: string(name), Key: bytes.Clone(k), Value: bytes.Clone(v)})
					return nil
				}
				nb := top.Bucket(k)
				nested := string(k)
				snap.Ops = append(snap.Ops, Op{Bucket: string(name), Nested: nested, Seq: nb.Sequence()})
				return nb.ForEach(func(k, v []byte) error {
					snap.Ops = append(snap.Ops, Op{Bucket: string(name), Nested: nested, Key: bytes.Clone(k), Value: bytes.Clone(v)})
					return nil
				})
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("storage: snapshot: %w", err)
	}
	// The secret files, read under the write lock so none is half
	// written: the credentials of mirrors, push mirrors and the rest.
	err = s.db.Update(func(*bolt.Tx) error {
		return filepath.WalkDir(s.credentialsDir(), func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") { // a temp file of writeSecret
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := s.credentialPath(path)
			snap.Ops = append(snap.Ops, Op{File: rel, Value: data})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("storage: snapshot of the credentials: %w", err)
	}
	// The kept chart archives, under the write lock too, so each is there
	// with its record. They are read into memory, as the rest of the
	// copy is: a full copy is rare (a new member, or one far behind), and
	// a data dir's charts are a few MiB to a few hundred.
	err = s.db.Update(func(*bolt.Tx) error {
		charts, err := filepath.Glob(filepath.Join(s.helmRoot(), "*", "charts", "*"))
		if err != nil {
			return err
		}
		for _, path := range charts {
			if strings.HasPrefix(filepath.Base(path), ".") { // a write in progress, or left by a crash
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(s.dir, path)
			snap.Ops = append(snap.Ops, Op{Tree: TreeHelm, File: filepath.ToSlash(rel), Value: data})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: snapshot of the kept charts: %w", err)
	}
	return snap, nil
}

// replaceHelmCharts makes the kept chart archives exactly the files of
// ops: each written (durably) unless it is there with that content, the
// others removed, and the directory of a Helm repository not in ops'
// records removed whole. A repository's last index and tag lists stay.
func (s *Store) replaceHelmCharts(ops []Op) error {
	repos := map[string]bool{}
	want := map[string]bool{}
	for _, op := range ops {
		switch {
		case op.Bucket == string(bucketHelmRepos) && op.Nested == "" && !op.Delete:
			repos[string(op.Key)] = true
		case op.Tree == TreeHelm && op.File != "" && !op.Delete:
			path, err := op.path(s)
			if err != nil {
				return err
			}
			want[path] = true
			if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, op.Value) {
				continue
			}
			if err := writeDurable(path, op.Value); err != nil {
				return fmt.Errorf("write chart %s: %w", op.File, err)
			}
		}
	}
	ents, err := os.ReadDir(s.helmRoot())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !repos[e.Name()] {
			if err := os.RemoveAll(filepath.Join(s.helmRoot(), e.Name())); err != nil {
				return err
			}
			continue
		}
		charts, err := filepath.Glob(filepath.Join(s.helmRoot(), e.Name(), "charts", "*"))
		if err != nil {
			return err
		}
		for _, path := range charts {
			if !want[path] {
				if err := os.RemoveAll(path); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// replaceCredentials makes the credentials directory hold exactly the
// files of ops: built beside it, then swapped in.
func (s *Store) replaceCredentials(ops []Op) error {
	tmp, err := os.MkdirTemp(s.dir, ".credentials-copy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o700); err != nil {
		return err
	}
	for _, op := range ops {
		if op.File == "" || op.Delete || op.Tree != TreeCredentials {
			continue
		}
		rel := filepath.FromSlash(op.File)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("credential file %q: not a path inside the credentials", op.File)
		}
		if err := writeSecret(filepath.Join(tmp, rel), op.Value); err != nil {
			return err
		}
	}
	old := tmp + ".old"
	if err := os.Rename(s.credentialsDir(), old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, s.credentialsDir()); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

// ApplySnapshot replaces this store's replicated state with snap: every
// repo in it is created if missing, its objects fetched with fetch and its
// refs set to exactly the snapshot's; then the metadata, the ref snapshots
// and the position are replaced in one bbolt transaction, and the change
// log emptied (this store holds no change before snap.Pos). Repos not in
// snap are removed last.
func (s *Store) ApplySnapshot(ctx context.Context, snap *Snapshot, fetch FetchFunc) error {
	var names []string
	for _, op := range snap.Ops {
		if op.Bucket == string(bucketRepos) && op.Nested == "" && !op.Delete {
			names = append(names, string(op.Key))
		}
	}
	keep := map[string]bool{}
	next := map[string]*Refs{}
	var changes []RefChange
	for _, name := range names {
		keep[name] = true
		if _, err := os.Stat(s.RepoPath(name)); err != nil {
			if err := s.initRepoDir(ctx, name); err != nil {
				return fmt.Errorf("full copy: %w", err)
			}
		}
		want := snap.Refs[name]
		if want == nil {
			want = &Refs{Head: "refs/heads/main"}
		}
		have, err := s.readRefs(ctx, name)
		if err != nil {
			return fmt.Errorf("full copy: %w", err)
		}
		diff := diffRefs(name, have, want)
		// As ApplyChange: a follower's housekeeping does not repack while
		// the copy's objects arrive and its refs move.
		done := s.BeginRepoWrite(name)
		r, err := s.moveRefs(ctx, name, want.Head, append(append([]RefChange(nil), diff...), diffList(name, have.Hidden, want.Hidden)...), nil, fetch)
		done()
		if err != nil {
			return fmt.Errorf("full copy: %w", err)
		}
		next[name] = r
		changes = append(changes, diff...)
	}
	if err := s.replaceCredentials(snap.Ops); err != nil {
		return fmt.Errorf("full copy: credentials: %w", err)
	}
	if err := s.replaceHelmCharts(snap.Ops); err != nil {
		return fmt.Errorf("full copy: kept charts: %w", err)
	}
	var gone []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRepos).ForEach(func(k, _ []byte) error {
			if !keep[string(k)] {
				gone = append(gone, string(k))
			}
			return nil
		}); err != nil {
			return err
		}
		var tops [][]byte
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			tops = append(tops, bytes.Clone(name))
			return nil
		}); err != nil {
			return err
		}
		for _, name := range tops {
			if bytes.Equal(name, bucketMeta) { // the schema stays; position below
				continue
			}
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		for _, op := range snap.Ops {
			if err := applyOp(tx, op); err != nil {
				return fmt.Errorf("full copy: %w", err)
			}
		}
		for name, r := range next {
			if snap.Refs[name] == nil {
				continue // as on the primary: in memory until its refs move
			}
			if err := putSnapshot(tx, name, r); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyPosition, posKey(snap.Pos)); err != nil {
			return err
		}
		return meta.Put(keyPositionSum, []byte(snap.Sum))
	})
	if err != nil {
		return fmt.Errorf("full copy: %w", err)
	}
	s.mu.Lock()
	for _, name := range gone {
		delete(s.refs, name)
	}
	for name, r := range next {
		s.refs[name] = r
	}
	s.mu.Unlock()
	for _, name := range gone {
		if err := s.removeRepoDir(name); err != nil {
			s.log.Error("remove a repo the primary does not have", "repo", name, "err", err)
		}
	}
	s.watch.set(snap.Pos, snap.Sum)
	for _, c := range changes {
		c.Pos = snap.Pos
		s.notify.publish(c)
	}
	return nil
}
