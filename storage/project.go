package storage

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketProjects holds the AppProjects: project name -> Project. The
// reconciler owns their meaning (what a project allows); storage keeps
// the document as applied.
var bucketProjects = []byte("projects")

// Project is an Argo CD AppProject as the user applied it.
type Project struct {
	Name string `json:"name"`
	// Manifest is the AppProject document exactly as applied.
	Manifest string `json:"manifest"`
	// Parent is the app whose render declared it; empty when applied by
	// hand.
	Parent string `json:"parent,omitempty"`
	// SignatureKeys are the keyIDs of the document's spec.signatureKeys:
	// the keys an app's commits must be signed by (none: unsigned commits
	// are applied). Kept here so a signing key a project names cannot be
	// deleted, and a project cannot name a key fjord does not have.
	SignatureKeys []string  `json:"signatureKeys,omitempty"`
	Created       time.Time `json:"created"`
	Updated       time.Time `json:"updated"`
}

// PutProject creates or replaces a project, keeping its creation time.
// signatureKeys are the keyIDs its spec.signatureKeys names; each must
// match a stored signing key (checked in the same transaction), or the
// error wraps ErrSigningKeyMissing and nothing changes.
func (s *Store) PutProject(name, manifest, parent string, signatureKeys []string) (Project, error) {
	var p Project
	err := s.update(func(tx *wtx) error {
		missing, err := missingSigningKeys(tx, signatureKeys)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return signingKeysMissing(name, missing)
		}
		err = getJSON(tx, bucketProjects, name, &p)
		now := time.Now().UTC()
		switch {
		case err == ErrNotFound:
			p = Project{Name: name, Created: now}
		case err != nil:
			return err
		}
		p.Manifest, p.Parent, p.SignatureKeys, p.Updated = manifest, parent, signatureKeys, now
		return tx.putJSON(bucketProjects, name, p)
	})
	if err != nil {
		return Project{}, fmt.Errorf("save project %q: %w", name, err)
	}
	return p, nil
}

// Project returns a project, or ErrNotFound.
func (s *Store) Project(name string) (Project, error) {
	var p Project
	if err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketProjects, name, &p) }); err != nil {
		return Project{}, fmt.Errorf("project %q: %w", name, err)
	}
	return p, nil
}

// Projects returns every stored project, sorted by name.
func (s *Store) Projects() ([]Project, error) {
	var out []Project
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketProjects).ForEach(func(k, v []byte) error {
			var p Project
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode project %q: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// ErrProjectInUse is returned by DeleteProject while apps use the project.
var ErrProjectInUse = fmt.Errorf("project in use")

// DeleteProject removes a project. It refuses, in the same transaction,
// while an app names it, so no app is left with a project that is gone.
func (s *Store) DeleteProject(name string) error {
	return s.update(func(tx *wtx) error {
		if tx.Bucket(bucketProjects).Get([]byte(name)) == nil {
			return fmt.Errorf("project %q: %w", name, ErrNotFound)
		}
		var users []string
		err := tx.Bucket(bucketApps).ForEach(func(k, v []byte) error {
			var a App
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode app %q: %w", k, err)
			}
			if a.Project == name {
				users = append(users, a.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			sort.Strings(users)
			return fmt.Errorf("project %q: %w by apps %v: delete them or move them to another project first", name, ErrProjectInUse, users)
		}
		return tx.del(bucketProjects, []byte(name))
	})
}
