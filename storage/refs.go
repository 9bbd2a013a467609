package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
)

// HiddenRefPrefix is the namespace fjord keeps for itself (history
// protection backups and the like). Refs under it are never in a snapshot
// and never advertised to clients.
const HiddenRefPrefix = "refs/fjord/"

// Ref is one advertised reference.
type Ref struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
	// Peeled is the commit an annotated tag points to; empty otherwise.
	Peeled string `json:"peeled,omitempty"`
}

// Refs is a snapshot of a repo's advertised refs. A *Refs is never modified
// after it is published, so readers may hold it without locks.
type Refs struct {
	// Head is the ref HEAD points to ("refs/heads/main"), empty when HEAD
	// is detached.
	Head string `json:"head,omitempty"`
	// HeadHash is the commit HEAD resolves to; empty while HEAD is unborn.
	HeadHash string `json:"headHash,omitempty"`
	// Refs are sorted by name.
	Refs []Ref `json:"refs"`
	// Hidden are the refs under HiddenRefPrefix (history protection
	// backups), sorted by name: never advertised, but replicated.
	Hidden []Ref `json:"hidden,omitempty"`
	// Read is when the snapshot was read from disk.
	Read time.Time `json:"read"`
	// Changed is when a ref last moved (a push, a mirror sync), as far
	// as this data dir has seen; it survives restarts.
	Changed time.Time `json:"changed,omitzero"`
}

// Lookup returns the ref with this full name.
func (r *Refs) Lookup(name string) (Ref, bool) {
	i := sort.Search(len(r.Refs), func(i int) bool { return r.Refs[i].Name >= name })
	if i < len(r.Refs) && r.Refs[i].Name == name {
		return r.Refs[i], true
	}
	return Ref{}, false
}

// RefChange is one ref that moved. Old is empty for a created ref, New is
// empty for a deleted one.
type RefChange struct {
	Repo string `json:"repo"`
	Ref  string `json:"ref"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
	// Peeled is the commit New points to when New is an annotated tag,
	// so a follower knows its refs without reading them back.
	Peeled string `json:"peeled,omitempty"`
	// Pos is the change log position of the change that moved the ref:
	// what a primary waits for its followers to hold before it
	// acknowledges a push.
	Pos uint64 `json:"pos,omitempty"`
}

// Refs returns the current snapshot of a repo's refs, answered from memory.
// ok is false if the repo does not exist.
func (s *Store) Refs(repo string) (refs *Refs, ok bool) {
	s.mu.RLock()
	refs, ok = s.refs[repo]
	s.mu.RUnlock()
	return refs, ok
}

func (s *Store) setRefs(repo string, refs *Refs) {
	s.mu.Lock()
	s.refs[repo] = refs
	s.mu.Unlock()
}

// RefreshRefs re-reads a repo's refs from disk, publishes the new snapshot,
// persists it, and notifies subscribers of every ref that moved. Call it
// after anything changed the repo's refs (a push, a mirror sync). Refreshes
// of one repo are serialized so each change is reported exactly once.
func (s *Store) RefreshRefs(ctx context.Context, repo string) ([]RefChange, error) {
	lock := s.repoLock(repo)
	lock.Lock()
	defer lock.Unlock()

	if _, err := s.Repo(repo); err != nil {
		return nil, err
	}
	next, err := s.readRefs(ctx, repo)
	if err != nil {
		return nil, err
	}
	prev, _ := s.Refs(repo)
	changes := diffRefs(repo, prev, next)
	// The snapshot and, when anything moved, its change at the next
	// position of the change log, in one transaction.
	pos, err := s.updateChange(func(tx *wtx) error {
		if tx.Bucket(bucketRepos).Get([]byte(repo)) == nil {
			return fmt.Errorf("repo %q: %w", repo, ErrNotFound)
		}
		var hidden []RefChange
		if prev != nil {
			hidden = diffList(repo, prev.Hidden, next.Hidden)
		} else {
			hidden = diffList(repo, nil, next.Hidden)
		}
		if len(changes) > 0 || len(hidden) > 0 || (prev != nil && prev.Head != next.Head) {
			// Hidden refs move on followers too, but nobody is notified.
			// The packs that came with the move go to followers with it.
			tx.refs = &Change{Repo: repo, Head: next.Head, Refs: append(append([]RefChange(nil), changes...), hidden...), Packs: s.newPacks(repo)}
		}
		// The snapshot persisted last (not the one in memory, empty after
		// a restart) says whether anything moved since.
		var saved Refs
		next.Changed = next.Read
		if getJSON(tx, bucketRefs, repo, &saved) == nil && len(diffRefs(repo, &saved, next)) == 0 && !saved.Changed.IsZero() {
			next.Changed = saved.Changed
		}
		return tx.putJSON(bucketRefs, repo, next)
	})
	if err != nil {
		return nil, fmt.Errorf("save refs of %q: %w", repo, err)
	}
	for i := range changes {
		changes[i].Pos = pos
	}
	s.setRefs(repo, next)
	for _, c := range changes {
		s.notify.publish(c)
	}
	return changes, nil
}

func (s *Store) repoLock(repo string) *sync.Mutex {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	l, ok := s.repoLocks[repo]
	if !ok {
		l = new(sync.Mutex)
		s.repoLocks[repo] = l
	}
	return l
}

// readRefs reads the refs of a repo from disk with one git process;
// for-each-ref knows loose refs, packed refs and peeled tags.
func (s *Store) readRefs(ctx context.Context, repo string) (*Refs, error) {
	dir := s.RepoPath(repo)
	out, err := s.gitOutput(ctx, dir, "for-each-ref", "--format=%(objectname) %(*objectname) %(refname)")
	if err != nil {
		return nil, fmt.Errorf("read refs of %q: %w", repo, err)
	}
	refs := &Refs{Read: time.Now().UTC()}
	for _, line := range bytes.Split(out, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		f := strings.SplitN(string(line), " ", 3)
		if len(f) != 3 {
			return nil, fmt.Errorf("read refs of %q: unexpected for-each-ref line %q", repo, line)
		}
		r := Ref{Name: f[2], Hash: f[0], Peeled: f[1]}
		if strings.HasPrefix(f[2], HiddenRefPrefix) {
			refs.Hidden = append(refs.Hidden, r)
			continue
		}
		refs.Refs = append(refs.Refs, r)
	}
	sort.Slice(refs.Refs, func(i, j int) bool { return refs.Refs[i].Name < refs.Refs[j].Name })
	sort.Slice(refs.Hidden, func(i, j int) bool { return refs.Hidden[i].Name < refs.Hidden[j].Name })

	head, err := os.ReadFile(filepath.Join(dir, "HEAD"))
	if err != nil {
		return nil, fmt.Errorf("read HEAD of %q: %w", repo, err)
	}
	h := strings.TrimSpace(string(head))
	if target, ok := strings.CutPrefix(h, "ref: "); ok {
		refs.Head = target
		if r, ok := refs.Lookup(target); ok {
			refs.HeadHash = r.Hash
		}
	} else {
		refs.HeadHash = h
	}
	return refs, nil
}

// diffRefs lists the advertised refs that differ between two snapshots,
// sorted by ref.
func diffRefs(repo string, prev, next *Refs) []RefChange {
	var old []Ref
	if prev != nil {
		old = prev.Refs
	}
	return diffList(repo, old, next.Refs)
}

// diffList lists the refs that differ between two lists, sorted by ref.
func diffList(repo string, prev, next []Ref) []RefChange {
	old := map[string]string{}
	for _, r := range prev {
		old[r.Name] = r.Hash
	}
	var out []RefChange
	for _, r := range next {
		if o := old[r.Name]; o != r.Hash {
			out = append(out, RefChange{Repo: repo, Ref: r.Name, Old: o, New: r.Hash, Peeled: r.Peeled})
		}
		delete(old, r.Name)
	}
	for name, o := range old {
		out = append(out, RefChange{Repo: repo, Ref: name, Old: o})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out
}

// loadSnapshots reads every repo's refs from disk at open, so the first
// client after a restart sees exactly what is on disk even if the previous
// process died between a push and its snapshot update.
func (s *Store) loadSnapshots(ctx context.Context) error {
	repos, err := s.Repos()
	if err != nil {
		return fmt.Errorf("storage: list repos: %w", err)
	}
	// Start from the persisted snapshots, so that only what moved on disk
	// since they were saved (a push whose refresh a crash cut short) is a
	// change, and goes into the change log.
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRefs).ForEach(func(k, v []byte) error {
			var r Refs
			if err := json.Unmarshal(v, &r); err != nil {
				return nil // unreadable: the refresh below rewrites it
			}
			s.refs[string(k)] = &r
			return nil
		})
	}); err != nil {
		return fmt.Errorf("storage: read ref snapshots: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, r := range repos {
		g.Go(func() error {
			_, err := s.RefreshRefs(gctx, r.Name)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("storage: repo %q is in the database but %s is missing: restore it from backup or `fjord repo delete %s`", r.Name, s.RepoPath(r.Name), r.Name)
			}
			return err
		})
	}
	return g.Wait()
}
