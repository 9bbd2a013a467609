package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fjordhq/fjord/internal/gitrun"
	bolt "go.etcd.io/bbolt"
)

// Repo is a repository's metadata.
type Repo struct {
	// Name is the canonical name (see NormalizeRepoName).
	Name string `json:"name"`
	// Created is when the repo was created.
	Created time.Time `json:"created"`
	// AnonRead lets clients without a registered key fetch the repo.
	AnonRead bool `json:"anonRead"`
	// Description is free text shown by `fjord repo list`.
	Description string `json:"description,omitempty"`
}

// RepoPath returns the bare repository directory of a (normalized) name.
func (s *Store) RepoPath(name string) string {
	return filepath.Join(s.reposDir(), filepath.FromSlash(name)+".git")
}

// CreateRepo creates an empty bare repository and its metadata. The repo is
// built in DATA/repos/.tmp and renamed into place, so a crash never leaves a
// half-initialized repo where clients could see it.
func (s *Store) CreateRepo(ctx context.Context, r Repo) (Repo, error) {
	name, err := NormalizeRepoName(r.Name)
	if err != nil {
		return Repo{}, err
	}
	r.Name = name
	if r.Created.IsZero() {
		r.Created = time.Now().UTC()
	}
	if _, err := s.Repo(name); err == nil {
		return Repo{}, fmt.Errorf("repo %q: %w", name, ErrExists)
	}
	final := s.RepoPath(name)
	if _, err := os.Stat(final); err == nil {
		return Repo{}, fmt.Errorf("repo %q: %w on disk at %s but not in the database; move that directory away first", name, ErrExists, final)
	}
	if err := s.initRepoDir(ctx, name); err != nil {
		return Repo{}, err
	}
	err = s.update(func(tx *wtx) error {
		if tx.Bucket(bucketRepos).Get([]byte(name)) != nil {
			return fmt.Errorf("repo %q: %w", name, ErrExists)
		}
		return tx.putJSON(bucketRepos, name, r)
	})
	if err != nil {
		os.RemoveAll(final)
		return Repo{}, err
	}
	s.setRefs(name, &Refs{Head: "refs/heads/main"})
	s.log.Info("repo created", "repo", name)
	return r, nil
}

// initRepoDir creates the empty bare repository of name.
func (s *Store) initRepoDir(ctx context.Context, name string) error {
	final := s.RepoPath(name)
	if err := os.MkdirAll(s.tmpDir(), 0o750); err != nil {
		return fmt.Errorf("create repo %q: %w", name, err)
	}
	tmp, err := os.MkdirTemp(s.tmpDir(), "create-")
	if err != nil {
		return fmt.Errorf("create repo %q: %w", name, err)
	}
	defer os.RemoveAll(tmp) // no-op after the rename
	if err := s.runGit(ctx, "", "init", "--quiet", "--bare", "--initial-branch=main", tmp); err != nil {
		return fmt.Errorf("create repo %q: %w", name, err)
	}
	// Settings every hosted repo needs; written to the repo's own config,
	// never to anything global.
	for _, kv := range [][2]string{
		{"receive.fsckObjects", "true"}, // refuse corrupt objects at push time
		{"receive.denyNonFastForwards", "false"},
		{"core.logAllRefUpdates", "false"},
	} {
		if err := s.runGit(ctx, tmp, "config", kv[0], kv[1]); err != nil {
			return fmt.Errorf("create repo %q: %w", name, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return fmt.Errorf("create repo %q: %w", name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("create repo %q: move into place: %w", name, err)
	}
	s.markPacksSeen(name, true) // so its first push's pack is sent along
	return nil
}

// Repo returns the metadata of one repo, or ErrNotFound.
func (s *Store) Repo(name string) (Repo, error) {
	var r Repo
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketRepos, name, &r) })
	if err != nil {
		return Repo{}, notFound("repo", name, err)
	}
	return r, nil
}

// Repos returns every repo, sorted by name.
func (s *Store) Repos() ([]Repo, error) {
	var out []Repo
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRepos).ForEach(func(k, v []byte) error {
			var r Repo
			if err := getJSON(tx, bucketRepos, string(k), &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// UpdateRepo applies fn to the stored metadata of name and saves the result
// in one transaction. The name itself cannot change.
func (s *Store) UpdateRepo(name string, fn func(*Repo) error) (Repo, error) {
	var r Repo
	err := s.update(func(tx *wtx) error {
		if err := getJSON(tx, bucketRepos, name, &r); err != nil {
			return notFound("repo", name, err)
		}
		if err := fn(&r); err != nil {
			return err
		}
		r.Name = name
		return tx.putJSON(bucketRepos, name, r)
	})
	return r, err
}

// AnyAnonRead reports whether at least one repo allows anonymous reads, so
// the SSH server knows whether to let unknown keys in at all.
func (s *Store) AnyAnonRead() bool {
	repos, err := s.Repos()
	if err != nil {
		return false
	}
	for _, r := range repos {
		if r.AnonRead {
			return true
		}
	}
	return false
}

// DeleteRepo removes a repo's metadata, grants and snapshot, then its
// directory. The directory is first renamed into DATA/repos/.tmp so clients
// never see a half-deleted repo.
func (s *Store) DeleteRepo(ctx context.Context, name string) error {
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketRepos).Get([]byte(name)) == nil {
			return notFound("repo", name, ErrNotFound)
		}
		if err := tx.del(bucketRepos, []byte(name)); err != nil {
			return err
		}
		if err := tx.del(bucketRefs, []byte(name)); err != nil {
			return err
		}
		if err := tx.del(bucketMirrors, []byte(name)); err != nil {
			return err
		}
		if err := tx.delPrefix(bucketPushMirrors, []byte(name+"\x00")); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketMirrorSyncs, bucketMirrorEvts} {
			if err := tx.dropNested(b, name); err != nil {
				return err
			}
		}
		return deleteGrantsForRepo(tx, name)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.refs, name)
	s.mu.Unlock()
	if err := s.removeRepoDir(name); err != nil {
		return err
	}
	s.log.Info("repo deleted", "repo", name)
	return nil
}

// removeRepoDir removes a repo's directory and credentials; the directory
// is first renamed into DATA/repos/.tmp so clients never see a
// half-deleted repo.
func (s *Store) removeRepoDir(name string) error {
	if err := os.MkdirAll(s.tmpDir(), 0o750); err != nil {
		return fmt.Errorf("delete repo %q: %w", name, err)
	}
	trash, err := os.MkdirTemp(s.tmpDir(), "delete-")
	if err != nil {
		return fmt.Errorf("delete repo %q: %w", name, err)
	}
	if err := os.Rename(s.RepoPath(name), filepath.Join(trash, "repo.git")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete repo %q: %w", name, err)
	}
	s.forgetPacks(name)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("delete repo %q: %w", name, err)
	}
	for _, kind := range []string{"mirror", "push"} {
		if err := os.RemoveAll(s.CredentialDir(kind, name)); err != nil {
			return fmt.Errorf("delete repo %q: credentials: %w", name, err)
		}
	}
	return nil
}

// runGit runs git with args in dir (which may be empty) and returns an error
// carrying git's stderr.
func (s *Store) runGit(ctx context.Context, dir string, args ...string) error {
	_, err := s.gitOutput(ctx, dir, args...)
	return err
}

func (s *Store) gitOutput(ctx context.Context, dir string, args ...string) ([]byte, error) {
	return gitrun.Runner{Git: s.git}.Output(ctx, dir, nil, args...)
}

// Git returns the git runner the store uses, for readers of its repos
// (the reconciler verifying a commit's signature) to start the same git.
func (s *Store) Git() gitrun.Runner { return gitrun.Runner{Git: s.git} }
