package storage

import (
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// lostFoundDir is where Open moves repo directories the database does not
// know: DATA/lost+found.
func (s *Store) lostFoundDir() string { return filepath.Join(s.dir, "lost+found") }

// recoverRepos repairs what a crash (kill -9, power loss) of the previous
// fjord left in DATA/repos: it runs at Open, when no git of fjord's can be
// running (fjord holds the database lock and its git children die with
// it). See moveStrayRepos and clearStale.
func (s *Store) recoverRepos() error {
	if err := s.moveStrayRepos(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRepos).ForEach(func(k, _ []byte) error {
			return s.clearStale(string(k))
		})
	})
}

// clearStale removes the lock files and push quarantines that git (or a
// follower's own writes) left in a repo when it was killed: a ref's .lock would otherwise make every
// later update of that ref fail ("Unable to create ….lock: File exists"),
// so a mirror would never sync again and pushes to the branch would be
// refused until someone deleted it by hand.
func (s *Store) clearStale(repo string) error {
	dir := s.RepoPath(repo)
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if filepath.Base(filepath.Dir(path)) == "objects" {
				switch {
				case len(name) == 2: // loose objects: nothing git locks
					return filepath.SkipDir
				case strings.HasPrefix(name, "incoming-"): // a push's quarantine
					s.log.Warn("removed the quarantine of a push cut short", "repo", repo, "path", path)
					if err := os.RemoveAll(path); err != nil {
						return err
					}
					return filepath.SkipDir
				}
			}
			return nil
		}
		if strings.HasSuffix(name, ".lock") {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				return err
			}
			s.log.Warn("removed a lock file left by a git killed with fjord", "repo", repo, "path", path)
		}
		if strings.HasPrefix(name, "tmp_fjord_") { // a follower's pack cut short (fileBatch)
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				return err
			}
			s.log.Warn("removed a file a replica was writing when it stopped", "repo", repo, "path", path)
		}
		return nil
	})
}

// moveStrayRepos moves every NAME.git directory under DATA/repos that has
// no repo in the database to DATA/lost+found. A crash leaves one behind
// when it falls between the two steps of CreateRepo (the directory renamed
// into place, the database not yet written: an empty repo no client was
// told about) or of DeleteRepo (the database entry gone, the directory not
// yet): such a directory is never served, yet it would make the next
// `repo create` of the name fail. It is moved, not deleted, and logged,
// so nothing placed there by hand is lost.
func (s *Store) moveStrayRepos() error {
	known := map[string]bool{}
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRepos).ForEach(func(k, _ []byte) error {
			known[string(k)] = true
			return nil
		})
	}); err != nil {
		return err
	}
	var stray []string
	root := s.reposDir()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || path == root {
			return err
		}
		if path == s.tmpDir() {
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name, ok := strings.CutSuffix(filepath.ToSlash(rel), ".git")
		if !ok {
			return nil // a folder of nested names ("team/")
		}
		if !known[name] {
			stray = append(stray, name)
		}
		return filepath.SkipDir
	})
	if err != nil {
		return err
	}
	for _, name := range stray {
		dst := filepath.Join(s.lostFoundDir(), url.PathEscape(name)+".git-"+time.Now().UTC().Format("20060102T150405.000000000"))
		if err := os.MkdirAll(s.lostFoundDir(), 0o700); err != nil {
			return err
		}
		if err := os.Rename(s.RepoPath(name), dst); err != nil {
			return fmt.Errorf("move stray repo directory %s: %w", s.RepoPath(name), err)
		}
		s.log.Warn("a repo directory the database does not know (left by a create or delete cut short) was moved away; remove it once you have checked it",
			"repo", name, "moved_to", dst)
	}
	return nil
}
