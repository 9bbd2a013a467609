package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The change log: every accepted change (a ref snapshot that moved, a
// metadata write) gets the next position in one ordered log, recorded in
// the same bbolt transaction as the change itself, so the log and the data
// never disagree. Replicas stream the log; a follower applies change N and
// stores it, verbatim and at the same position, in one transaction, so a
// follower's log is a prefix of its primary's and a promoted follower can
// serve the stream on.
var (
	bucketChanges  = []byte("changes") // position (uint64 big endian) -> Change JSON
	keyPosition    = []byte("position")
	keyPositionSum = []byte("position-sum")
)

// DefaultChangeLogSize is how many changes a store keeps for followers
// that fall behind when Options.ChangeLogSize is zero. A follower further
// behind makes a full copy.
const DefaultChangeLogSize = 10000

// Errors of the change log.
var (
	// ErrChangesTrimmed is returned by ChangesSince when changes after the
	// asked position were already trimmed: the follower needs a full copy.
	ErrChangesTrimmed = errors.New("changes trimmed from the change log")
	// ErrPositionGap is returned by ApplyChange for a change that is not
	// the one after the store's position.
	ErrPositionGap = errors.New("change is not the next position")
	// ErrReadOnly is returned by every write of a store that refuses
	// writes (see RefuseWrites).
	ErrReadOnly = errors.New("this replica takes no writes")
)

// RefuseWrites makes every write of the store that would be a change
// (anything but a follower's ApplyChange and ApplySnapshot) fail with
// ErrReadOnly wrapped in why, e.g. "this replica follows fjord-0 at
// HOST:PORT", and leave nothing behind; nil takes writes again. A follower
// refuses writes so that its change log stays a copy of its primary's.
func (s *Store) RefuseWrites(why error) {
	s.readOnly.Store(&why)
}

// refusing returns the error writes fail with, or nil.
func (s *Store) refusing() error {
	p := s.readOnly.Load()
	if p == nil || *p == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrReadOnly, *p)
}

// localBuckets are never replicated: the log itself, the schema, and the
// ref snapshots, which every replica derives from its own repos.
var localBuckets = map[string]bool{
	string(bucketMeta):    true,
	string(bucketChanges): true,
	string(bucketRefs):    true,
}

// Change is one accepted change at one position of the log.
type Change struct {
	// Pos is the change's position: 1 for the first, then one more each.
	Pos  uint64    `json:"pos"`
	Time time.Time `json:"time"`
	// Repo is the repo whose refs moved, for a ref snapshot change.
	Repo string `json:"repo,omitempty"`
	// Head is Repo's HEAD target after the change ("refs/heads/main").
	Head string `json:"head,omitempty"`
	// Refs are Repo's refs that moved.
	Refs []RefChange `json:"refs,omitempty"`
	// Packs are the packs (by base name in objects/pack) that appeared in
	// Repo with this change, which the primary sends along with it; see
	// Store.ChangePacks.
	Packs []string `json:"packs,omitempty"`
	// Ops are the metadata keys the change wrote, in order.
	Ops []Op `json:"ops,omitempty"`

	// Raw is the change as stored, which a follower stores verbatim.
	Raw json.RawMessage `json:"-"`
}

// Op is one metadata key written or deleted by a change.
type Op struct {
	// Bucket is the top-level bucket.
	Bucket string `json:"b"`
	// Nested is the bucket inside Bucket the op is in (a per-repo or
	// per-app log); empty for Bucket itself.
	Nested string `json:"n,omitempty"`
	// Key is the key; empty with Delete and Nested set, the op deletes
	// the nested bucket whole.
	Key []byte `json:"k,omitempty"`
	// Value is the new value; unused with Delete.
	Value  []byte `json:"v,omitempty"`
	Delete bool   `json:"d,omitempty"`
	// Seq is the nested bucket's sequence after the op, so a promoted
	// follower numbers the next log entry as its primary would have.
	Seq uint64 `json:"s,omitempty"`
	// File, when set, makes the op a file's instead of a key's: its path
	// (slash separated) in the tree Tree names (see FileTree), written
	// (0600) or, with Delete, removed (a directory with all it holds). The log
	// holds no file's content: a write's content travels beside the
	// change, read from the file when it is sent (see ChangeFiles), so no
	// secret stays in the log and no chart archive bloats it; only
	// credential changes logged before that, and full copies, carry it in
	// Value.
	File string `json:"f,omitempty"`
	// Tree is the tree of files File is in; empty for the credentials.
	Tree FileTree `json:"t,omitempty"`
}

// FileTree names a directory under DATA whose files replicate as file ops.
type FileTree string

// The trees of files that replicate.
const (
	// TreeCredentials is DATA/credentials, which its paths are under:
	// secret files (mirrors, push mirrors, clusters, notifiers, Helm
	// repositories). The zero value, so the
	// credential ops logged before trees existed read as what they are.
	TreeCredentials FileTree = ""
	// TreeHelm is DATA/helm: the chart archives helmrepo keeps, under
	// helm/NAME/charts. Its paths are under DATA and start with "helm/",
	// so a follower of an older fjord, which knows no trees and reads
	// every path under DATA/credentials, touches only a "helm" directory
	// there that holds nothing of its own. A Helm repository's last index
	// and tag lists do not replicate: a promoted replica reads them again,
	// and until it can it resolves versions among the kept charts (whose
	// records replicate).
	TreeHelm FileTree = "helm"
)

// dir returns the directory of tree t in the data directory of s.
func (t FileTree) dir(s *Store) (string, error) {
	switch t {
	case TreeCredentials:
		return s.credentialsDir(), nil
	case TreeHelm:
		return s.dir, nil
	}
	return "", fmt.Errorf("file tree %q is unknown to this fjord (a newer primary?): upgrade this replica", string(t))
}

// fileKey is the key of op's content in the files ChangeFiles returns:
// the path for a credential file, as before trees existed, and
// "TREE:PATH" for the others (no credential path holds a colon).
func (op Op) fileKey() string {
	if op.Tree == TreeCredentials {
		return op.File
	}
	return string(op.Tree) + ":" + op.File
}

// path returns the file op's path on disk, checked to be inside its tree.
func (op Op) path(s *Store) (string, error) {
	dir, err := op.Tree.dir(s)
	if err != nil {
		return "", err
	}
	rel := filepath.FromSlash(op.File)
	inside := filepath.IsLocal(rel)
	if op.Tree == TreeHelm {
		inside = inside && strings.HasPrefix(op.File, "helm/") && len(op.File) > len("helm/")
	}
	if !inside {
		return "", fmt.Errorf("file %q: not a path inside DATA/%s", op.File, op.Tree.name())
	}
	return filepath.Join(dir, rel), nil
}

// name is the tree's directory name under DATA, for messages.
func (t FileTree) name() string {
	if t == TreeCredentials {
		return "credentials"
	}
	return string(t)
}

// Sum returns the checksum that identifies the change at its position: a
// follower and its primary hold the same change at a position exactly when
// the sums agree.
func (c Change) Sum() string { return sumOf(c.Raw) }

func sumOf(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	h := sha256.Sum256(raw)
	return hex.EncodeToString(h[:16])
}

// positionWatch wakes waiters when the position advances.
type positionWatch struct {
	mu   sync.Mutex
	pos  uint64
	sum  string
	wake chan struct{} // closed and replaced on every advance
}

func (w *positionWatch) set(pos uint64, sum string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pos, w.sum = pos, sum
	if w.wake != nil {
		close(w.wake)
		w.wake = nil
	}
}

func (w *positionWatch) get() (uint64, string, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wake == nil {
		w.wake = make(chan struct{})
	}
	return w.pos, w.sum, w.wake
}

// Position returns the position of the newest change this store holds
// (0 before the first).
func (s *Store) Position() uint64 {
	pos, _, _ := s.watch.get()
	return pos
}

// PositionSum returns the position and the Sum of the change at it ("" at
// 0), which a follower sends its primary to prove it holds the same
// history.
func (s *Store) PositionSum() (uint64, string) {
	pos, sum, _ := s.watch.get()
	return pos, sum
}

// WaitChange blocks until the store's position is past after, or ctx ends.
func (s *Store) WaitChange(ctx context.Context, after uint64) error {
	for {
		pos, _, wake := s.watch.get()
		if pos > after {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// SumAt returns the Sum of the change at pos, or ErrChangesTrimmed when
// the store no longer (or never) held it.
func (s *Store) SumAt(pos uint64) (string, error) {
	if pos == 0 {
		return "", nil
	}
	cur, sum := s.PositionSum()
	if pos == cur {
		return sum, nil
	}
	var out string
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketChanges).Get(posKey(pos))
		if raw == nil {
			return fmt.Errorf("change %d: %w", pos, ErrChangesTrimmed)
		}
		out = sumOf(raw)
		return nil
	})
	return out, err
}

// ChangesSince returns up to max changes after pos, oldest first (none
// when pos is the newest). It fails with ErrChangesTrimmed when the change
// after pos is no longer in the log.
func (s *Store) ChangesSince(pos uint64, max int) ([]Change, error) {
	if max <= 0 {
		max = 1000
	}
	var out []Change
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := readPosition(tx)
		if pos >= cur {
			return nil
		}
		c := tx.Bucket(bucketChanges).Cursor()
		k, v := c.Seek(posKey(pos + 1))
		if k == nil || binary.BigEndian.Uint64(k) != pos+1 {
			return fmt.Errorf("change %d: %w (the log starts later; a full copy is needed)", pos+1, ErrChangesTrimmed)
		}
		for ; k != nil && len(out) < max; k, v = c.Next() {
			ch, err := decodeChange(v)
			if err != nil {
				return fmt.Errorf("change %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, err
}

func decodeChange(raw []byte) (Change, error) {
	var c Change
	if err := json.Unmarshal(raw, &c); err != nil {
		return Change{}, fmt.Errorf("decode change: %w", err)
	}
	c.Raw = append(json.RawMessage(nil), raw...)
	return c, nil
}

func posKey(pos uint64) []byte { return binary.BigEndian.AppendUint64(nil, pos) }

func readPosition(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyPosition)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// loadPosition reads the position at Open.
func (s *Store) loadPosition() error {
	return s.db.View(func(tx *bolt.Tx) error {
		s.watch.set(readPosition(tx), string(tx.Bucket(bucketMeta).Get(keyPositionSum)))
		return nil
	})
}

// wtx is a write transaction that records, for the change log, every
// metadata key it writes. Every write of the store goes through one (see
// Store.update); reads may use the embedded *bolt.Tx.
type wtx struct {
	*bolt.Tx
	ops  []Op
	refs *Change // the ref snapshot change, set by RefreshRefs
}

func (w *wtx) record(op Op) {
	if !localBuckets[op.Bucket] {
		w.ops = append(w.ops, op)
	}
}

// put stores value at key in bucket, creating the bucket if needed.
func (w *wtx) put(bucket, key, value []byte) error {
	b, err := w.CreateBucketIfNotExists(bucket)
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", bucket, key, err)
	}
	if err := b.Put(key, value); err != nil {
		return fmt.Errorf("write %s/%s: %w", bucket, key, err)
	}
	w.record(Op{Bucket: string(bucket), Key: bytes.Clone(key), Value: bytes.Clone(value)})
	return nil
}

// putJSON encodes v and stores it at key in bucket.
func (w *wtx) putJSON(bucket []byte, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return w.put(bucket, []byte(key), raw)
}

// del deletes key from bucket.
func (w *wtx) del(bucket, key []byte) error {
	b := w.Bucket(bucket)
	if b == nil {
		return nil
	}
	if err := b.Delete(key); err != nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, key, err)
	}
	w.record(Op{Bucket: string(bucket), Key: bytes.Clone(key), Delete: true})
	return nil
}

// writeCredentials records that the secret file at path was written, but
// not what it holds: the log lives in fjord.db, is kept for thousands of
// changes and copied by every backup, and a rotated secret must not
// linger there.
func (w *wtx) writeCredentials(s *Store, path string) {
	if rel, ok := s.credentialPath(path); ok {
		w.ops = append(w.ops, Op{File: rel})
	}
}

// writeFile records that the file rel (slash separated) of tree was
// written; its content is sent beside the change (ChangeFiles).
func (w *wtx) writeFile(tree FileTree, rel string) {
	w.ops = append(w.ops, Op{Tree: tree, File: rel})
}

// removeFile records that rel (a file or a directory) of tree was
// removed; the caller removes it.
func (w *wtx) removeFile(tree FileTree, rel string) {
	w.ops = append(w.ops, Op{Tree: tree, File: rel, Delete: true})
}

// ChangeFiles reads, for a change about to be sent to a follower, the
// current content of every file it writes (credentials, kept chart
// archives), keyed as the follower's ApplyChange looks them up: by path
// under the credentials for a credential file, by "TREE:PATH" for the
// others. A file since removed is left out (a later change removes it on
// the follower too), and a file since replaced is read as it is now, so
// nothing superseded is ever sent; chart archives are never rewritten, so
// theirs is exactly what was written.
func (s *Store) ChangeFiles(c Change) (map[string][]byte, error) {
	var out map[string][]byte
	for _, op := range c.Ops {
		if op.File == "" || op.Delete || op.Value != nil {
			continue
		}
		path, err := op.path(s)
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", c.Pos, err)
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("change %d: read %s %s: %w", c.Pos, op.Tree.name(), op.File, err)
		}
		if out == nil {
			out = map[string][]byte{}
		}
		out[op.fileKey()] = data
	}
	return out, nil
}

// removeCredentials records that path (a file or a directory) under the
// credentials was removed; the caller removes it.
func (w *wtx) removeCredentials(s *Store, path string) {
	if rel, ok := s.credentialPath(path); ok {
		w.ops = append(w.ops, Op{File: rel, Delete: true})
	}
}

// credentialsDir holds every secret file (see CredentialDir).
func (s *Store) credentialsDir() string { return filepath.Join(s.dir, "credentials") }

// credentialPath returns path relative to the credentials directory.
func (s *Store) credentialPath(path string) (string, bool) {
	rel, err := filepath.Rel(s.credentialsDir(), path)
	if err != nil || !filepath.IsLocal(rel) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// applyFileOp writes or removes the file of op; a write's content is
// op.Value (a credential change logged before the log held no secrets)
// or files[op.fileKey()], and a write the primary sent no content for
// (the file was removed since) writes nothing. A chart archive is
// written durably (fsync, then rename, then the directory's fsync)
// before the change's transaction commits, so a follower that acked the
// change holds the archive across a crash.
func (s *Store) applyFileOp(op Op, files map[string][]byte) error {
	path, err := op.path(s)
	if err != nil {
		return err
	}
	if op.Delete {
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("remove %s %s: %w", op.Tree.name(), op.File, err)
		}
		return nil
	}
	data := op.Value
	if data == nil {
		var ok bool
		if data, ok = files[op.fileKey()]; !ok {
			return nil
		}
	}
	if op.Tree == TreeHelm {
		err = writeDurable(path, data)
	} else {
		err = writeSecret(path, data)
	}
	if err != nil {
		return fmt.Errorf("write %s %s: %w", op.Tree.name(), op.File, err)
	}
	return nil
}

// delPrefix deletes every key of bucket that starts with prefix.
func (w *wtx) delPrefix(bucket, prefix []byte) error {
	var dead [][]byte
	b := w.Bucket(bucket)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		dead = append(dead, bytes.Clone(k))
	}
	for _, k := range dead {
		if err := w.del(bucket, k); err != nil {
			return err
		}
	}
	return nil
}

// nested returns the bucket name inside bucket, creating it if needed.
func (w *wtx) nested(bucket []byte, name string) (*nestedBucket, error) {
	b, err := w.Bucket(bucket).CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("create %s/%s: %w", bucket, name, err)
	}
	return &nestedBucket{w: w, b: b, top: string(bucket), name: name}, nil
}

// dropNested deletes the bucket name inside bucket, if it exists.
func (w *wtx) dropNested(bucket []byte, name string) error {
	if w.Bucket(bucket).Bucket([]byte(name)) == nil {
		return nil
	}
	if err := w.Bucket(bucket).DeleteBucket([]byte(name)); err != nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, name, err)
	}
	w.record(Op{Bucket: string(bucket), Nested: name, Delete: true})
	return nil
}

// nestedBucket is a bucket inside a top-level bucket whose writes are
// recorded.
type nestedBucket struct {
	w         *wtx
	b         *bolt.Bucket
	top, name string
}

// nextSequence is bolt's NextSequence.
func (n *nestedBucket) nextSequence() (uint64, error) { return n.b.NextSequence() }

func (n *nestedBucket) put(key, value []byte) error {
	if err := n.b.Put(key, value); err != nil {
		return fmt.Errorf("write %s/%s: %w", n.top, n.name, err)
	}
	n.w.record(Op{Bucket: n.top, Nested: n.name, Key: bytes.Clone(key), Value: bytes.Clone(value), Seq: n.b.Sequence()})
	return nil
}

func (n *nestedBucket) del(key []byte) error {
	if err := n.b.Delete(key); err != nil {
		return fmt.Errorf("delete %s/%s: %w", n.top, n.name, err)
	}
	n.w.record(Op{Bucket: n.top, Nested: n.name, Key: bytes.Clone(key), Delete: true, Seq: n.b.Sequence()})
	return nil
}

// update runs fn in a write transaction and, when fn wrote anything that
// replicates, appends the change to the log at the next position in the
// same transaction. It is the one way the store writes: a write that went
// around it would never reach a follower.
func (s *Store) update(fn func(tx *wtx) error) error {
	// Before fn, which may write files (credentials) as it goes.
	if err := s.refusing(); err != nil {
		return err
	}
	_, err := s.updateChange(fn)
	return err
}

// updateChange is update returning the position of the change recorded
// (0 when nothing replicated was written).
func (s *Store) updateChange(fn func(tx *wtx) error) (uint64, error) {
	var pos uint64
	var sum string
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := &wtx{Tx: tx}
		if err := fn(w); err != nil {
			return err
		}
		if len(w.ops) == 0 && w.refs == nil {
			return nil
		}
		if err := s.refusing(); err != nil {
			return err
		}
		c := Change{Pos: readPosition(tx) + 1, Time: time.Now().UTC(), Ops: w.ops}
		if w.refs != nil {
			c.Repo, c.Head, c.Refs, c.Packs = w.refs.Repo, w.refs.Head, w.refs.Refs, w.refs.Packs
			for i := range c.Refs {
				c.Refs[i].Pos = c.Pos
			}
		}
		raw, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode change %d: %w", c.Pos, err)
		}
		pos, sum = c.Pos, sumOf(raw)
		return s.appendChange(tx, pos, raw)
	})
	if err != nil {
		return 0, err
	}
	if pos > 0 {
		s.watch.set(pos, sum)
	}
	return pos, nil
}

// appendChange stores raw at pos, makes pos the position, and trims the
// log to the newest ChangeLogSize entries.
func (s *Store) appendChange(tx *bolt.Tx, pos uint64, raw []byte) error {
	b := tx.Bucket(bucketChanges)
	if err := b.Put(posKey(pos), raw); err != nil {
		return fmt.Errorf("append change %d: %w", pos, err)
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keyPosition, posKey(pos)); err != nil {
		return err
	}
	if err := meta.Put(keyPositionSum, []byte(sumOf(raw))); err != nil {
		return err
	}
	if pos <= uint64(s.logSize) {
		return nil
	}
	oldest := pos - uint64(s.logSize) // the newest key to drop
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= oldest; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("trim change log: %w", err)
		}
	}
	return nil
}

// applyOp writes one op of another store's change; a file's op is
// applyFileOp's.
func applyOp(tx *bolt.Tx, op Op) error {
	if op.File != "" {
		return nil
	}
	if localBuckets[op.Bucket] || op.Bucket == "" {
		return fmt.Errorf("op on bucket %q: not a replicated bucket", op.Bucket)
	}
	top, err := tx.CreateBucketIfNotExists([]byte(op.Bucket))
	if err != nil {
		return err
	}
	b := top
	if op.Nested != "" {
		if op.Delete && len(op.Key) == 0 {
			if err := top.DeleteBucket([]byte(op.Nested)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
			return nil
		}
		if b, err = top.CreateBucketIfNotExists([]byte(op.Nested)); err != nil {
			return err
		}
		if len(op.Key) == 0 && !op.Delete { // a snapshot's nested bucket
			return b.SetSequence(op.Seq)
		}
	}
	if op.Delete {
		err = b.Delete(op.Key)
	} else {
		err = b.Put(op.Key, op.Value)
	}
	if err != nil {
		return err
	}
	if op.Nested != "" && op.Seq > b.Sequence() {
		return b.SetSequence(op.Seq)
	}
	return nil
}
