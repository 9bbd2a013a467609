package storage

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Access is what a user may do with a repo. Levels are ordered: each
// includes the ones below it.
type Access int

// Access levels.
const (
	AccessNone  Access = iota // may not know the repo exists
	AccessRead                // fetch, clone, archive
	AccessWrite               // push too
	AccessAdmin               // everything, on every repo
)

// String returns the name used on the command line and in the API.
func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	case AccessAdmin:
		return "admin"
	default:
		return "none"
	}
}

// ParseAccess parses "none", "read" or "write" (a grant cannot be "admin":
// admin is a property of the user).
func ParseAccess(s string) (Access, error) {
	switch s {
	case "none":
		return AccessNone, nil
	case "read":
		return AccessRead, nil
	case "write":
		return AccessWrite, nil
	}
	return AccessNone, fmt.Errorf("access %q: want read, write or none", s)
}

// Grant is one user's access to one repo.
type Grant struct {
	User   string `json:"user"`
	Repo   string `json:"repo"`
	Access string `json:"access"`
}

func grantKey(user, repo string) []byte { return []byte(user + "\x00" + repo) }

// SetGrant gives user the access level on repo; AccessNone removes the grant.
func (s *Store) SetGrant(user, repo string, a Access) error {
	return s.update(func(tx *wtx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return notFound("user", user, ErrNotFound)
		}
		if tx.Bucket(bucketRepos).Get([]byte(repo)) == nil {
			return notFound("repo", repo, ErrNotFound)
		}
		if a == AccessNone {
			return tx.del(bucketGrants, grantKey(user, repo))
		}
		return tx.put(bucketGrants, grantKey(user, repo), []byte(a.String()))
	})
}

// Grants returns every grant, ordered by user then repo.
func (s *Store) Grants() ([]Grant, error) {
	var out []Grant
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGrants).ForEach(func(k, v []byte) error {
			user, repo, _ := bytes.Cut(k, []byte{0})
			out = append(out, Grant{User: string(user), Repo: string(repo), Access: string(v)})
			return nil
		})
	})
	return out, err
}

// AccessFor returns what user (nil for an anonymous client) may do with
// repo. A repo that does not exist gives AccessNone, the same as one the
// user may not read, so callers cannot leak which repos exist.
func (s *Store) AccessFor(user *User, repo string) Access {
	var a Access
	s.db.View(func(tx *bolt.Tx) error {
		var r Repo
		if getJSON(tx, bucketRepos, repo, &r) != nil {
			return nil
		}
		if user != nil && user.Admin {
			a = AccessAdmin
			return nil
		}
		if r.AnonRead {
			a = AccessRead
		}
		if user == nil {
			return nil
		}
		if v := tx.Bucket(bucketGrants).Get(grantKey(user.Name, repo)); v != nil {
			if g, err := ParseAccess(string(v)); err == nil && g > a {
				a = g
			}
		}
		return nil
	})
	return a
}

func deleteGrantsForUser(tx *wtx, user string) error {
	return tx.delPrefix(bucketGrants, []byte(user+"\x00"))
}

func deleteGrantsForRepo(tx *wtx, repo string) error {
	b := tx.Bucket(bucketGrants)
	var dead [][]byte
	b.ForEach(func(k, _ []byte) error {
		if _, r, _ := bytes.Cut(k, []byte{0}); string(r) == repo {
			dead = append(dead, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range dead {
		if err := tx.del(bucketGrants, k); err != nil {
			return err
		}
	}
	return nil
}
