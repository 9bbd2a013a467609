package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Mirror buckets. Sync history and events are keyed by repo name, then a
// big-endian sequence number, in nested buckets, so the newest are found
// with one cursor seek and retention deletes from the front.
var (
	bucketMirrors     = []byte("mirrors")      // repo -> Mirror
	bucketMirrorSyncs = []byte("mirror_syncs") // repo -> seq -> MirrorSync
	bucketMirrorEvts  = []byte("mirror_events")
	bucketPushMirrors = []byte("push_mirrors") // repo -> []PushMirror
)

// Mirror is the configuration and status of a pull mirror. The repo it
// fills has the same name.
type Mirror struct {
	Repo string `json:"repo"`
	// Upstream is the URL fetched from, without any userinfo password.
	Upstream string `json:"upstream"`
	// Interval is the time between scheduled syncs.
	Interval time.Duration `json:"interval"`
	// Credentials names the files under DATA/credentials/REPO that exist:
	// "ssh_key", "known_hosts", "token", "webhook_secret". Their content
	// never leaves the server.
	Credentials []string `json:"credentials,omitempty"`
	// Retention bounds how many history-protection events (and backup
	// refs) are kept. Zero means 100.
	Retention int       `json:"retention,omitempty"`
	Created   time.Time `json:"created"`

	// Status, updated after every sync.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	// Failures counts consecutive failed syncs (for backoff).
	Failures int `json:"failures,omitempty"`
	// UpstreamChanged is when the last sync saw the upstream move; with
	// LastSuccess it bounds how far behind the mirror can be.
	UpstreamChanged time.Time `json:"upstreamChanged,omitzero"`
}

// HasCredential reports whether the mirror has the named credential file.
func (m Mirror) HasCredential(name string) bool {
	for _, c := range m.Credentials {
		if c == name {
			return true
		}
	}
	return false
}

// MirrorSync is one sync attempt, for `fjord mirror status`.
type MirrorSync struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	// Fetched is false when the upstream's refs had not changed and no
	// fetch was needed.
	Fetched bool        `json:"fetched"`
	Changes []RefChange `json:"changes,omitempty"`
	Error   string      `json:"error,omitempty"`
	Trigger string      `json:"trigger"` // add, schedule, webhook, manual, restore (push mirrors: add, push, schedule)
}

// MirrorEvent records history protection at work: an upstream force-push
// or ref deletion, and the hidden ref that still holds the old tip.
type MirrorEvent struct {
	// ID numbers the mirror's events from 1, in order; `fjord mirror
	// restore NAME ID` names an event by it.
	ID        uint64    `json:"id"`
	Time      time.Time `json:"time"`
	Ref       string    `json:"ref"`
	Kind      string    `json:"kind"` // force-push or delete
	Old       string    `json:"old"`
	New       string    `json:"new,omitempty"`
	BackupRef string    `json:"backupRef"`
}

// maxSyncHistory is how many sync records are kept per mirror.
const maxSyncHistory = 50

// CredentialDir is where a mirror's or push mirror's secrets live (0700).
// The repo name is escaped into one path segment, so the secrets of
// "team" and "team/app" never nest.
func (s *Store) CredentialDir(kind, repo string) string {
	return filepath.Join(s.dir, "credentials", kind, url.PathEscape(repo))
}

// PushCredentialDir is where one push mirror's secrets live.
func (s *Store) PushCredentialDir(repo, id string) string {
	return filepath.Join(s.CredentialDir("push", repo), id)
}

// WriteCredentials stores secret files with mode 0600 in dir (one of
// CredentialDir or PushCredentialDir), 0700, replacing what was there.
// The files are a change of the change log, so followers hold them too.
func (s *Store) WriteCredentials(dir, repo string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("credentials for %q: %w", repo, err)
	}
	return s.update(func(tx *wtx) error {
		if err := tx.writeSecrets(s, dir, files); err != nil {
			return fmt.Errorf("credentials for %q: %w", repo, err)
		}
		return nil
	})
}

// writeSecrets writes files into dir (see writeSecret) as part of tx's
// change. A file written stays written if tx does not commit: the caller
// writes the record that names the files in the same tx, so a record
// never names a file that is not there.
func (w *wtx) writeSecrets(s *Store, dir string, files map[string][]byte) error {
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := writeSecret(path, data); err != nil {
			return err
		}
		w.writeCredentials(s, path)
	}
	return nil
}

// writeSecret writes a secret file, 0600 in a 0700 directory, by rename.
func writeSecret(path string, data []byte) error {
	// Durable before the change that records it commits: a follower acks
	// the change, so the secret must survive its crash too.
	return writeDurable(path, data)
}

// RemoveCredentials deletes the named secret files from dir; a name that
// is not there is no error.
func (s *Store) RemoveCredentials(dir, repo string, names []string) error {
	return s.update(func(tx *wtx) error {
		for _, name := range names {
			path := filepath.Join(dir, name)
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("credentials for %q: %w", repo, err)
			}
			tx.removeCredentials(s, path)
		}
		return nil
	})
}

// CreateMirror stores a mirror's configuration. The repo must exist.
func (s *Store) CreateMirror(m Mirror) error {
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	return s.update(func(tx *wtx) error {
		if tx.Bucket(bucketRepos).Get([]byte(m.Repo)) == nil {
			return fmt.Errorf("repo %q: %w", m.Repo, ErrNotFound)
		}
		if tx.Bucket(bucketMirrors).Get([]byte(m.Repo)) != nil {
			return fmt.Errorf("mirror %q: %w", m.Repo, ErrExists)
		}
		return tx.putJSON(bucketMirrors, m.Repo, m)
	})
}

// Mirror returns a mirror, or ErrNotFound.
func (s *Store) Mirror(repo string) (Mirror, error) {
	var m Mirror
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketMirrors, repo, &m) })
	if err != nil {
		return Mirror{}, notFound("mirror", repo, err)
	}
	return m, nil
}

// Mirrors returns every mirror, sorted by repo.
func (s *Store) Mirrors() ([]Mirror, error) {
	var out []Mirror
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMirrors).ForEach(func(k, _ []byte) error {
			var m Mirror
			if err := getJSON(tx, bucketMirrors, string(k), &m); err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Repo < out[j].Repo })
	return out, err
}

// UpdateMirror applies fn to a stored mirror in one transaction.
func (s *Store) UpdateMirror(repo string, fn func(*Mirror) error) (Mirror, error) {
	var m Mirror
	err := s.update(func(tx *wtx) error {
		if err := getJSON(tx, bucketMirrors, repo, &m); err != nil {
			return notFound("mirror", repo, err)
		}
		if err := fn(&m); err != nil {
			return err
		}
		m.Repo = repo
		return tx.putJSON(bucketMirrors, repo, m)
	})
	return m, err
}

// RecordMirrorSync updates a mirror's status and appends the sync to its
// history in one transaction, keeping the newest maxSyncHistory.
func (s *Store) RecordMirrorSync(repo string, rec MirrorSync, update func(*Mirror)) error {
	err := s.update(func(tx *wtx) error {
		var m Mirror
		if err := getJSON(tx, bucketMirrors, repo, &m); err != nil {
			return fmt.Errorf("mirror %q: %w", repo, err)
		}
		update(&m)
		if err := tx.putJSON(bucketMirrors, repo, m); err != nil {
			return err
		}
		return appendLog(tx, bucketMirrorSyncs, repo, rec, maxSyncHistory)
	})
	return s.published(err, Event{Kind: EventMirror, Name: repo})
}

// RecordMirrorEvents appends history-protection events, keeping the newest
// keep; it returns the events dropped so their backup refs can go too.
func (s *Store) RecordMirrorEvents(repo string, evs []MirrorEvent, keep int) ([]MirrorEvent, error) {
	var dropped []MirrorEvent
	err := s.update(func(tx *wtx) error {
		for _, ev := range evs {
			if err := appendLog(tx, bucketMirrorEvts, repo, ev, 0); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketMirrorEvts).Bucket([]byte(repo)) == nil {
			return nil
		}
		b, err := tx.nested(bucketMirrorEvts, repo)
		if err != nil {
			return err
		}
		return trimFront(b, keep, func(v []byte) {
			var ev MirrorEvent
			if json.Unmarshal(v, &ev) == nil {
				dropped = append(dropped, ev)
			}
		})
	})
	return dropped, s.published(err, Event{Kind: EventMirror, Name: repo})
}

// MirrorSyncs returns up to n recent syncs, newest first.
func (s *Store) MirrorSyncs(repo string, n int) ([]MirrorSync, error) {
	return readLogJSON[MirrorSync](s.db, bucketMirrorSyncs, repo, n)
}

// MirrorEvents returns up to n recent history-protection events, newest
// first, each with its ID.
func (s *Store) MirrorEvents(repo string, n int) ([]MirrorEvent, error) {
	var out []MirrorEvent
	err := readLog(s.db, bucketMirrorEvts, repo, n, func(seq uint64, v []byte) error {
		var ev MirrorEvent
		if err := json.Unmarshal(v, &ev); err != nil {
			return err
		}
		ev.ID = seq
		out = append(out, ev)
		return nil
	})
	return out, err
}

// MirrorEvent returns one history-protection event by its ID, or a
// NotFoundError (kind "event") when retention dropped it or it never was.
func (s *Store) MirrorEvent(repo string, id uint64) (MirrorEvent, error) {
	var ev MirrorEvent
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMirrorEvts).Bucket([]byte(repo))
		if b == nil {
			return ErrNotFound
		}
		raw := b.Get(binary.BigEndian.AppendUint64(nil, id))
		if raw == nil {
			return ErrNotFound
		}
		return json.Unmarshal(raw, &ev)
	})
	if err != nil {
		return ev, notFound("event", fmt.Sprintf("%s#%d", repo, id), err)
	}
	ev.ID = id
	return ev, nil
}

// DeleteMirror removes a mirror's configuration, history and credentials;
// the repo stays, as an ordinary hosted repo.
func (s *Store) DeleteMirror(repo string) error {
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketMirrors).Get([]byte(repo)) == nil {
			return notFound("mirror", repo, ErrNotFound)
		}
		for _, b := range [][]byte{bucketMirrorSyncs, bucketMirrorEvts} {
			if err := tx.dropNested(b, repo); err != nil {
				return err
			}
		}
		tx.removeCredentials(s, s.CredentialDir("mirror", repo))
		return tx.del(bucketMirrors, []byte(repo))
	})
	if err != nil {
		return err
	}
	return os.RemoveAll(s.CredentialDir("mirror", repo))
}

// appendLog adds v under the next sequence number of repo's nested
// bucket, dropping the oldest entries beyond keep (0 keeps all).
func appendLog(tx *wtx, bucket []byte, repo string, v any, keep int) error {
	b, err := tx.nested(bucket, repo)
	if err != nil {
		return err
	}
	seq, err := b.nextSequence()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := b.put(binary.BigEndian.AppendUint64(nil, seq), raw); err != nil {
		return err
	}
	return trimFront(b, keep, nil)
}

// trimFront deletes the oldest entries of a log bucket until at most keep
// remain (keep <= 0 keeps all), passing each dropped value to dropped.
// It counts with a cursor: Bucket.Stats does not see the writes of the
// transaction it runs in.
func trimFront(b *nestedBucket, keep int, dropped func([]byte)) error {
	if keep <= 0 {
		return nil
	}
	n := 0
	c := b.b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	var dead [][]byte
	for k, v := c.First(); k != nil && n > keep; k, v = c.Next() {
		if dropped != nil {
			dropped(v)
		}
		dead = append(dead, bytes.Clone(k))
		n--
	}
	for _, k := range dead {
		if err := b.del(k); err != nil {
			return err
		}
	}
	return nil
}

// readLogJSON decodes up to n entries of repo's log in bucket, newest
// first.
func readLogJSON[T any](db *bolt.DB, bucket []byte, repo string, n int) ([]T, error) {
	var out []T
	err := readLog(db, bucket, repo, n, func(_ uint64, v []byte) error {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// readLog calls fn with the sequence number and value of up to n entries
// of repo's log in bucket, newest first.
func readLog(db *bolt.DB, bucket []byte, repo string, n int, fn func(seq uint64, v []byte) error) error {
	return db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket).Bucket([]byte(repo))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		i := 0
		for k, v := c.Last(); k != nil && (n <= 0 || i < n); k, v = c.Prev() {
			if err := fn(binary.BigEndian.Uint64(k), v); err != nil {
				return err
			}
			i++
		}
		return nil
	})
}

// PushMirror copies a repo's branches and tags to a remote after every
// accepted change, plus a periodic full pass.
type PushMirror struct {
	Repo string `json:"repo"`
	// Remote is the URL pushed to, without secrets.
	Remote string `json:"remote"`
	// ID names the push mirror's credential directory: a hash of Remote.
	ID string `json:"id"`
	// Interval is the time between full passes.
	Interval    time.Duration `json:"interval"`
	Credentials []string      `json:"credentials,omitempty"`
	Created     time.Time     `json:"created"`

	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	Failures    int       `json:"failures,omitempty"`
}

func pushMirrorKey(repo, id string) []byte { return []byte(repo + "\x00" + id) }

// CreatePushMirror stores a push mirror. The repo must exist.
func (s *Store) CreatePushMirror(p PushMirror) error {
	if p.Created.IsZero() {
		p.Created = time.Now().UTC()
	}
	return s.update(func(tx *wtx) error {
		if tx.Bucket(bucketRepos).Get([]byte(p.Repo)) == nil {
			return fmt.Errorf("repo %q: %w", p.Repo, ErrNotFound)
		}
		k := pushMirrorKey(p.Repo, p.ID)
		if tx.Bucket(bucketPushMirrors).Get(k) != nil {
			return fmt.Errorf("push mirror of %q to %s: %w", p.Repo, p.Remote, ErrExists)
		}
		raw, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return tx.put(bucketPushMirrors, k, raw)
	})
}

// PushMirrors returns the push mirrors of repo, or of every repo if repo
// is empty, ordered by repo.
func (s *Store) PushMirrors(repo string) ([]PushMirror, error) {
	var out []PushMirror
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPushMirrors).Cursor()
		prefix := []byte(repo + "\x00")
		k, v := c.First()
		if repo != "" {
			k, v = c.Seek(prefix)
		}
		for ; k != nil; k, v = c.Next() {
			if repo != "" && !bytes.HasPrefix(k, prefix) {
				break
			}
			var p PushMirror
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode push mirror %q: %w", k, err)
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// UpdatePushMirror applies fn to a stored push mirror in one transaction.
func (s *Store) UpdatePushMirror(repo, id string, fn func(*PushMirror)) (PushMirror, error) {
	var p PushMirror
	err := s.update(func(tx *wtx) error {
		k := pushMirrorKey(repo, id)
		raw := tx.Bucket(bucketPushMirrors).Get(k)
		if raw == nil {
			return fmt.Errorf("push mirror of %q: %w", repo, ErrNotFound)
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		fn(&p)
		raw, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return tx.put(bucketPushMirrors, k, raw)
	})
	return p, err
}

// DeletePushMirror removes a push mirror and its credentials.
func (s *Store) DeletePushMirror(repo, id string) error {
	err := s.update(func(tx *wtx) error {
		k := pushMirrorKey(repo, id)
		if tx.Bucket(bucketPushMirrors).Get(k) == nil {
			return fmt.Errorf("push mirror of %q: %w", repo, ErrNotFound)
		}
		// The credential files go in the same change, so replicas drop
		// them too; they are removed below once it is committed.
		tx.removeCredentials(s, s.PushCredentialDir(repo, id))
		return tx.del(bucketPushMirrors, k)
	})
	if err != nil {
		return err
	}
	return os.RemoveAll(s.PushCredentialDir(repo, id))
}
