package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fjordhq/fjord/internal/gitrun"
	bolt "go.etcd.io/bbolt"
)

// BackupFormat is the version of the backup layout Backup writes and
// Restore reads.
const BackupFormat = 1

// ManifestName is the file in a backup directory that describes it.
const ManifestName = "backup.json"

// HostKeyName is the SSH host key's file name in a data directory (and so
// in a backup).
const HostKeyName = "ssh_host_ed25519_key"

// BackupManifest describes a backup: DIR/backup.json.
type BackupManifest struct {
	// Format is BackupFormat of the fjord that wrote it.
	Format int `json:"format"`
	// Schema is the metadata schema of the database in the backup.
	Schema  uint64    `json:"schema"`
	Created time.Time `json:"created"`
	// Repos are the repos in the backup with the refs they hold, which
	// are the ref snapshot of the database in the backup.
	Repos []BackupRepo `json:"repos"`
	// Credentials counts the secret files (mirror and push mirror
	// credentials) in the backup.
	Credentials int `json:"credentials"`
	// HelmFiles counts the files of Helm repositories in the backup: kept
	// chart archives and the last index or tag lists read (DATA/helm), so
	// a restored server renders chart apps with the repositories down.
	HelmFiles int `json:"helmFiles"`
	// HostKey is whether the SSH host key is in the backup.
	HostKey bool `json:"hostKey"`
}

// BackupRepo is one repo of a backup.
type BackupRepo struct {
	Name string `json:"name"`
	Head string `json:"head,omitempty"`
	Refs []Ref  `json:"refs"`
}

// BackupOptions configures Backup. The zero value is usable.
type BackupOptions struct {
	// HostKey is the SSH host private key file to include. Empty means
	// DATA/ssh_host_ed25519_key when it exists.
	HostKey string
	// Progress receives one line per step, for people. Nil discards.
	Progress func(msg string)
}

// Backup writes a consistent copy of the data directory to dir, which must
// not exist yet (its parent must). Everything is read under one database
// read transaction: the database copy (bbolt Tx.WriteTo), the ref snapshot
// in it, and each repo, whose refs are then set to exactly that snapshot,
// so the backup is the state clients were served at one instant even while
// pushes and syncs go on. Mirror credentials, the Helm repositories' kept
// charts and indexes, and the host key are included; the backup is written with modes 0700/0600 into a temp dir
// beside dir and renamed into place only when complete.
func (s *Store) Backup(ctx context.Context, dir string, opts *BackupOptions) (BackupManifest, error) {
	if opts == nil {
		opts = &BackupOptions{}
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if !filepath.IsAbs(dir) {
		return BackupManifest{}, fmt.Errorf("backup to %q: give an absolute path", dir)
	}
	if _, err := os.Lstat(dir); err == nil {
		return BackupManifest{}, fmt.Errorf("backup to %s: %w; give a new directory, e.g. one named for the date", dir, ErrExists)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return BackupManifest{}, fmt.Errorf("backup to %s: %w (the parent directory must exist and be writable)", dir, err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	if err := os.Chmod(tmp, 0o700); err != nil {
		return BackupManifest{}, fmt.Errorf("backup to %s: %w", dir, err)
	}

	// No repack replaces packs while they are copied; housekeeping waits.
	s.gate.upkeep.Lock()
	defer s.gate.upkeep.Unlock()
	m := BackupManifest{Format: BackupFormat, Created: time.Now().UTC()}
	err = s.db.View(func(tx *bolt.Tx) error {
		m.Schema = binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keySchema))
		if err := writeFileSync(filepath.Join(tmp, "fjord.db"), tx.WriteTo); err != nil {
			return fmt.Errorf("copy database: %w", err)
		}
		progress(fmt.Sprintf("database: %d bytes", tx.Size()))
		var names []string
		if err := tx.Bucket(bucketRepos).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		}); err != nil {
			return err
		}
		for i, name := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			snap := Refs{Head: "refs/heads/main"}
			if raw := tx.Bucket(bucketRefs).Get([]byte(name)); raw != nil {
				if err := json.Unmarshal(raw, &snap); err != nil {
					return fmt.Errorf("decode ref snapshot of %q: %w", name, err)
				}
			}
			dst := filepath.Join(tmp, "repos", filepath.FromSlash(name)+".git")
			if err := s.backupRepo(ctx, name, dst, &snap); err != nil {
				return err
			}
			m.Repos = append(m.Repos, BackupRepo{Name: name, Head: snap.Head, Refs: snap.Refs})
			progress(fmt.Sprintf("repo %d/%d %s: %d refs", i+1, len(names), name, len(snap.Refs)))
		}
		// Credentials are read under the same transaction, so they match
		// the mirrors the database copy names.
		n, err := copyTree(filepath.Join(s.dir, "credentials"), filepath.Join(tmp, "credentials"), nil)
		if err != nil {
			return fmt.Errorf("copy credentials: %w", err)
		}
		m.Credentials = n
		progress(fmt.Sprintf("credentials: %d files", n))
		// Kept charts, under the same transaction too: an archive is
		// written before its record commits, so every chart the database
		// copy records is here (an archive without its record, kept
		// meanwhile, is harmless). Temp files of writes in flight stay out.
		n, err = copyTree(s.helmRoot(), filepath.Join(tmp, "helm"), func(_ string, d fs.DirEntry) bool {
			return strings.HasPrefix(d.Name(), ".")
		})
		if err != nil {
			return fmt.Errorf("copy helm repositories: %w", err)
		}
		m.HelmFiles = n
		progress(fmt.Sprintf("helm repositories: %d files", n))
		return nil
	})
	if err != nil {
		return BackupManifest{}, fmt.Errorf("backup to %s: %w", dir, err)
	}

	hostKey := opts.HostKey
	if hostKey == "" {
		hostKey = filepath.Join(s.dir, HostKeyName)
	}
	if err := copyFile(hostKey, filepath.Join(tmp, HostKeyName)); err == nil {
		m.HostKey = true
		progress("host key: included")
	} else if !errors.Is(err, os.ErrNotExist) || opts.HostKey != "" {
		return BackupManifest{}, fmt.Errorf("backup to %s: host key: %w", dir, err)
	}

	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return BackupManifest{}, err
	}
	if err := writeFileSync(filepath.Join(tmp, ManifestName), func(w io.Writer) (int64, error) {
		n, err := w.Write(append(raw, '\n'))
		return int64(n), err
	}); err != nil {
		return BackupManifest{}, fmt.Errorf("backup to %s: %w", dir, err)
	}
	if err := syncDir(tmp); err != nil {
		return BackupManifest{}, fmt.Errorf("backup to %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return BackupManifest{}, fmt.Errorf("backup to %s: move into place: %w", dir, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return BackupManifest{}, fmt.Errorf("backup to %s: %w", dir, err)
	}
	s.log.Info("backup written", "dir", dir, "repos", len(m.Repos))
	return m, nil
}

// backupRepo copies the repo name into dst and sets its refs to snap. The
// files are copied while pushes may go on: objects are only ever added
// (loose objects before the packs that may absorb them, as the walk is in
// lexical order; no repack runs during a backup), and the refs copied are then replaced by the snapshot's,
// whose objects were in the repo when the snapshot was taken. A ref whose
// object is missing makes update-ref fail, so an incomplete copy is an
// error, never a silent loss.
func (s *Store) backupRepo(ctx context.Context, name, dst string, snap *Refs) error {
	src := s.RepoPath(name)
	if _, err := copyTree(src, dst, skipInRepo); err != nil {
		return fmt.Errorf("copy repo %q: %w", name, err)
	}
	if err := s.writeSnapshotRefs(ctx, dst, snap); err != nil {
		return fmt.Errorf("repo %q: %w", name, err)
	}
	// git wrote the new refs and HEAD with the process umask.
	return filepath.WalkDir(dst, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		}
		return os.Chmod(path, mode)
	})
}

// writeSnapshotRefs makes the advertised refs of the repo at dir exactly snap's, in
// one ref transaction; hidden refs (refs/fjord/) are left as they are.
func (s *Store) writeSnapshotRefs(ctx context.Context, dir string, snap *Refs) error {
	out, err := s.gitOutput(ctx, dir, "for-each-ref", "--format=%(refname)")
	if err != nil {
		return err
	}
	want := map[string]bool{}
	var script bytes.Buffer
	for _, r := range snap.Refs {
		want[r.Name] = true
		fmt.Fprintf(&script, "update %s %s\n", r.Name, r.Hash)
	}
	for _, ref := range strings.Fields(string(out)) {
		if !want[ref] && !strings.HasPrefix(ref, HiddenRefPrefix) {
			fmt.Fprintf(&script, "delete %s\n", ref)
		}
	}
	if _, err := (gitrun.Runner{Git: s.git}).Output(ctx, dir, &script, "update-ref", "--no-deref", "--stdin"); err != nil {
		return fmt.Errorf("set refs to the snapshot: %w", err)
	}
	if snap.Head != "" {
		return s.runGit(ctx, dir, "symbolic-ref", "HEAD", snap.Head)
	}
	if snap.HeadHash != "" {
		return s.runGit(ctx, dir, "update-ref", "--no-deref", "HEAD", snap.HeadHash)
	}
	return nil
}

// skipInRepo leaves out what is in flight in a repo: lock files, objects
// being written and a push's quarantine.
func skipInRepo(rel string, d fs.DirEntry) bool {
	base := d.Name()
	return strings.HasSuffix(base, ".lock") || strings.HasPrefix(base, "tmp_") ||
		strings.HasPrefix(base, "incoming-") || strings.HasPrefix(base, ".tmp-")
}

// copyTree copies the regular files under src to dst with modes 0700 for
// directories and 0600 for files, fsyncing each, and returns how many it
// copied. A missing src copies nothing. Files that vanish during the walk
// (a ref packed, a loose object moved into a pack) are skipped.
func copyTree(src, dst string, skip func(rel string, d fs.DirEntry) bool) (int, error) {
	n := 0
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel != "." && skip != nil && skip(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type().IsRegular():
			err := copyFile(path, target)
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err == nil {
				n++
			}
			return err
		}
		return nil // sockets, symlinks: nothing fjord keeps
	})
	if err != nil {
		return n, err
	}
	if n > 0 {
		return n, syncDirs(dst)
	}
	return n, nil
}

// copyFile copies src to dst (mode 0600) and fsyncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFileSync(dst, func(w io.Writer) (int64, error) { return io.Copy(w, in) })
}

// writeFileSync creates dst with mode 0600, fills it with write, and
// fsyncs it before closing.
func writeFileSync(dst string, write func(io.Writer) (int64, error)) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", dst, err)
	}
	return f.Close()
}

// syncDirs fsyncs every directory under root, so the names of the files
// copied into them are durable too.
func syncDirs(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(path)
	})
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// ReadBackupManifest reads and checks DIR/backup.json.
func ReadBackupManifest(dir string) (BackupManifest, error) {
	var m BackupManifest
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return m, fmt.Errorf("%s is not a fjord backup (no %s): %w", dir, ManifestName, err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("%s: %w (the backup is damaged)", filepath.Join(dir, ManifestName), err)
	}
	if m.Format > BackupFormat {
		return m, fmt.Errorf("backup %s has format %d, this fjord reads up to %d: restore it with a newer fjord", dir, m.Format, BackupFormat)
	}
	sort.Slice(m.Repos, func(i, j int) bool { return m.Repos[i].Name < m.Repos[j].Name })
	return m, nil
}

// RestoreOptions configures Restore. The zero value is usable.
type RestoreOptions struct {
	// Git is the git binary; empty means "git" from PATH.
	Git string
	// Progress receives one line per step, for people. Nil discards.
	Progress func(msg string)
}

// Restore makes the data directory to from the backup in from, offline
// (no fjord may serve to). to must be empty or not exist. The backup's
// database is checked (bbolt's consistency check), copied with the repos,
// credentials, Helm repositories' files and host key into
// to/.restore-partial, opened as a data dir
// to check that every repo serves exactly the refs the backup recorded,
// and only then moved into place, the database last: a restore cut short
// leaves to non-empty and without fjord.db, so it is never mistaken for a
// complete one (remove it and restore again).
func Restore(ctx context.Context, from, to string, opts *RestoreOptions) (BackupManifest, error) {
	if opts == nil {
		opts = &RestoreOptions{}
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	m, err := ReadBackupManifest(from)
	if err != nil {
		return m, err
	}
	if ents, err := os.ReadDir(to); err == nil && len(ents) > 0 {
		return m, fmt.Errorf("restore to %s: the directory is not empty; restore into a new or empty directory", to)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return m, fmt.Errorf("restore to %s: %w", to, err)
	}
	if err := CheckDB(filepath.Join(from, "fjord.db")); err != nil {
		return m, fmt.Errorf("restore from %s: %w", from, err)
	}
	progress("database: consistency check passed")
	if err := os.MkdirAll(to, 0o700); err != nil {
		return m, fmt.Errorf("restore to %s: %w", to, err)
	}
	partial := filepath.Join(to, ".restore-partial")
	n, err := copyTree(from, partial, func(rel string, _ fs.DirEntry) bool { return rel == ManifestName })
	if err != nil {
		return m, fmt.Errorf("restore to %s: copy: %w", to, err)
	}
	progress(fmt.Sprintf("copied %d files", n))

	if err := verifyRestored(ctx, partial, m, opts.Git); err != nil {
		return m, fmt.Errorf("restore to %s: %w", to, err)
	}
	progress(fmt.Sprintf("%d repos serve the refs of the backup", len(m.Repos)))

	ents, err := os.ReadDir(partial)
	if err != nil {
		return m, fmt.Errorf("restore to %s: %w", to, err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[j].Name() == "fjord.db" }) // the database last
	for _, e := range ents {
		if err := os.Rename(filepath.Join(partial, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return m, fmt.Errorf("restore to %s: move into place: %w", to, err)
		}
	}
	if err := os.Remove(partial); err != nil {
		return m, fmt.Errorf("restore to %s: %w", to, err)
	}
	if err := syncDir(to); err != nil {
		return m, fmt.Errorf("restore to %s: %w", to, err)
	}
	return m, nil
}

// verifyRestored opens the data dir at dir, which reads every repo's refs
// from disk as a starting server does, and compares them with the
// manifest.
func verifyRestored(ctx context.Context, dir string, m BackupManifest, git string) error {
	st, err := Open(ctx, dir, &Options{Git: git, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("open the restored data: %w", err)
	}
	defer st.Close()
	repos, err := st.Repos()
	if err != nil {
		return err
	}
	if len(repos) != len(m.Repos) {
		return fmt.Errorf("the database holds %d repos, the manifest %d: the backup is damaged", len(repos), len(m.Repos))
	}
	for _, want := range m.Repos {
		got, ok := st.Refs(want.Name)
		if !ok {
			return fmt.Errorf("repo %q of the manifest is not in the database: the backup is damaged", want.Name)
		}
		if got.Head != want.Head || !sameRefs(got.Refs, want.Refs) {
			return fmt.Errorf("repo %q: its refs on disk differ from the manifest: the backup is damaged", want.Name)
		}
	}
	return nil
}

func sameRefs(a, b []Ref) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Hash != b[i].Hash {
			return false
		}
	}
	return true
}

// CheckDB runs bbolt's consistency check on the closed database file at
// path (read-only) and returns every problem it finds as one error.
func CheckDB(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s fails bbolt's consistency check: %w", path, errors.Join(errs...))
		}
		return nil
	})
}
