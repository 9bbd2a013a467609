package storage

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the metadata schema this build reads and writes. Opening
// a database with a higher version fails with ErrSchemaTooNew rather than
// risking a silent misread of data a newer fjord wrote.
const SchemaVersion = 1

// Bucket names. Each holds JSON values keyed by name unless noted.
var (
	bucketMeta   = []byte("meta")   // "schema" -> uint64 big endian
	bucketRepos  = []byte("repos")  // repo name -> Repo
	bucketUsers  = []byte("users")  // user name -> User
	bucketKeys   = []byte("keys")   // key fingerprint -> user name
	bucketGrants = []byte("grants") // user "\x00" repo -> Access
	bucketRefs   = []byte("refs")   // repo name -> Refs
	keySchema    = []byte("schema")
)

// Options configures Open. The zero value is usable.
type Options struct {
	// Logger receives storage events. Nil means slog.Default().
	Logger *slog.Logger
	// LockTimeout bounds how long Open waits for the database file lock
	// held by another process. Zero means one second.
	LockTimeout time.Duration
	// Git is the git binary used to create repos and read refs. Empty
	// means "git" from PATH.
	Git string
	// ChangeLogSize is how many changes the change log keeps for
	// followers. Zero means DefaultChangeLogSize.
	ChangeLogSize int
}

// Store is an open data directory. It is safe for concurrent use.
type Store struct {
	dir    string
	db     *bolt.DB
	log    *slog.Logger
	git    string
	notify feed[RefChange]
	events feed[Event] // app and mirror record changes, see SubscribeEvents

	mu   sync.RWMutex
	refs map[string]*Refs // current ref snapshot per repo; values immutable

	refreshMu sync.Mutex
	repoLocks map[string]*sync.Mutex // serializes snapshot refreshes per repo

	gate  repoGate // writes against upkeep, see BeginRepoWrite
	packs packSet  // the packs seen per repo, see Change.Packs

	watch    positionWatch // the change log's position
	logSize  int
	readOnly atomic.Pointer[error] // see RefuseWrites
}

// Open opens (creating if needed) the data directory dir. It fails with
// ErrLocked if another fjord has the database open and with ErrSchemaTooNew
// if a newer fjord wrote it.
func Open(ctx context.Context, dir string, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	s := &Store{
		dir:       dir,
		log:       opts.Logger,
		git:       opts.Git,
		refs:      make(map[string]*Refs),
		repoLocks: make(map[string]*sync.Mutex),
		logSize:   opts.ChangeLogSize,
	}
	if s.logSize <= 0 {
		s.logSize = DefaultChangeLogSize
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.git == "" {
		s.git = "git"
	}
	timeout := opts.LockTimeout
	if timeout == 0 {
		timeout = time.Second
	}
	if err := os.MkdirAll(s.reposDir(), 0o750); err != nil {
		return nil, fmt.Errorf("storage: create data dir %s: %w", dir, err)
	}
	// Leftovers of a create or delete interrupted by a crash are never
	// served; clear them so a retried create of the same name succeeds.
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return nil, fmt.Errorf("storage: clear %s: %w", s.tmpDir(), err)
	}
	path := filepath.Join(dir, "fjord.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("storage: open %s: %w (stop the other `fjord serve --data %s` first)", path, ErrLocked, dir)
		}
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	s.db = db
	if err := s.initSchema(); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: %s: %w", path, err)
	}
	if err := s.loadPosition(); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: %s: %w", path, err)
	}
	if err := s.recoverRepos(); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: %s: %w", dir, err)
	}
	if err := s.loadSnapshots(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) initSchema() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketRepos, bucketUsers, bucketKeys, bucketGrants, bucketRefs,
			bucketMirrors, bucketMirrorSyncs, bucketMirrorEvts, bucketPushMirrors,
			bucketApps, bucketAppInv, bucketAppSyncs, bucketAppDrifts, bucketProjects, bucketSigningKeys, bucketNotifiers, bucketNotifySeen, bucketNotifyDeliveries, bucketChanges,
			bucketHelmRepos, bucketHelmCharts,
			bucketLoginTokens, bucketSessions, bucketClusters} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keySchema)
		if v == nil {
			return meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion))
		}
		if len(v) != 8 {
			return fmt.Errorf("meta/schema holds %d bytes, want 8: the database is not a fjord database or is damaged", len(v))
		}
		if got := binary.BigEndian.Uint64(v); got > SchemaVersion {
			return fmt.Errorf("%w: database schema %d, this fjord supports up to %d; run a newer fjord on this data dir", ErrSchemaTooNew, got, SchemaVersion)
		}
		// Older schemas would be migrated here; version 1 is the first.
		return nil
	})
}

// Close closes the database. Repos on disk are left as they are.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) reposDir() string { return filepath.Join(s.dir, "repos") }
func (s *Store) tmpDir() string   { return filepath.Join(s.reposDir(), ".tmp") }

// reader is a transaction that reads buckets: a *bolt.Tx or a *wtx.
type reader interface {
	Bucket(name []byte) *bolt.Bucket
}

// getJSON decodes the value at key in bucket into v, or returns ErrNotFound.
func getJSON(tx reader, bucket []byte, key string, v any) error {
	raw := tx.Bucket(bucket).Get([]byte(key))
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return nil
}
