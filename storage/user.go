package storage

import (
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	gossh "golang.org/x/crypto/ssh"
)

// User is a person or robot that authenticates with SSH public keys.
type User struct {
	Name    string    `json:"name"`
	Admin   bool      `json:"admin"`
	Keys    []Key     `json:"keys"`
	Created time.Time `json:"created"`
}

// Key is one SSH public key of a user.
type Key struct {
	// Fingerprint is the SHA256 fingerprint, as `ssh-keygen -lf` prints it.
	Fingerprint string `json:"fingerprint"`
	// AuthorizedKey is the key in authorized_keys format, without comment.
	AuthorizedKey string `json:"authorizedKey"`
	// Comment is the comment that followed the key in the file it came from.
	Comment string `json:"comment,omitempty"`
}

// ParseKey parses one public key in authorized_keys format (the content of
// an id_ed25519.pub file).
func ParseKey(text string) (Key, error) {
	pk, comment, _, _, err := gossh.ParseAuthorizedKey([]byte(strings.TrimSpace(text)))
	if err != nil {
		return Key{}, fmt.Errorf("parse public key: %w (give the .pub file, in authorized_keys format)", err)
	}
	return Key{
		Fingerprint:   gossh.FingerprintSHA256(pk),
		AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))),
		Comment:       comment,
	}, nil
}

// CreateUser stores a new user. Each key must not belong to anyone yet.
func (s *Store) CreateUser(u User) (User, error) {
	if err := ValidateUserName(u.Name); err != nil {
		return User{}, err
	}
	if u.Created.IsZero() {
		u.Created = time.Now().UTC()
	}
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketUsers).Get([]byte(u.Name)) != nil {
			return fmt.Errorf("user %q: %w", u.Name, ErrExists)
		}
		if err := indexKeys(tx, u.Name, u.Keys); err != nil {
			return err
		}
		return tx.putJSON(bucketUsers, u.Name, u)
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// indexKeys records that keys belong to user, refusing a key that belongs
// to someone else: one key, one identity.
func indexKeys(tx *wtx, user string, keys []Key) error {
	b := tx.Bucket(bucketKeys)
	for _, k := range keys {
		if owner := b.Get([]byte(k.Fingerprint)); owner != nil && string(owner) != user {
			return fmt.Errorf("key %s: %w: it belongs to user %q", k.Fingerprint, ErrExists, owner)
		}
		if err := tx.put(bucketKeys, []byte(k.Fingerprint), []byte(user)); err != nil {
			return err
		}
	}
	return nil
}

// User returns one user, or ErrNotFound.
func (s *Store) User(name string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketUsers, name, &u) })
	if err != nil {
		return User{}, notFound("user", name, err)
	}
	return u, nil
}

// UserByKey returns the user owning the key with this SHA256 fingerprint.
func (s *Store) UserByKey(fingerprint string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error {
		name := tx.Bucket(bucketKeys).Get([]byte(fingerprint))
		if name == nil {
			return fmt.Errorf("key %s: %w", fingerprint, ErrNotFound)
		}
		return getJSON(tx, bucketUsers, string(name), &u)
	})
	return u, err
}

// Users returns every user, sorted by name.
func (s *Store) Users() ([]User, error) {
	var out []User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error {
			var u User
			if err := getJSON(tx, bucketUsers, string(k), &u); err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// UpdateUser applies fn to a stored user and saves it, re-indexing its keys,
// in one transaction.
func (s *Store) UpdateUser(name string, fn func(*User) error) (User, error) {
	var u User
	err := s.update(func(tx *wtx) error {
		if err := getJSON(tx, bucketUsers, name, &u); err != nil {
			return notFound("user", name, err)
		}
		old := u.Keys
		if err := fn(&u); err != nil {
			return err
		}
		u.Name = name
		for _, k := range old {
			if err := tx.del(bucketKeys, []byte(k.Fingerprint)); err != nil {
				return err
			}
		}
		if err := indexKeys(tx, name, u.Keys); err != nil {
			return err
		}
		return tx.putJSON(bucketUsers, name, u)
	})
	return u, err
}

// DeleteUser removes a user, their keys and their grants.
func (s *Store) DeleteUser(name string) error {
	return s.update(func(tx *wtx) error {
		var u User
		if err := getJSON(tx, bucketUsers, name, &u); err != nil {
			return notFound("user", name, err)
		}
		for _, k := range u.Keys {
			if err := tx.del(bucketKeys, []byte(k.Fingerprint)); err != nil {
				return err
			}
		}
		if err := deleteGrantsForUser(tx, name); err != nil {
			return err
		}
		if err := deleteSessionsOf(tx, name); err != nil {
			return err
		}
		return tx.del(bucketUsers, []byte(name))
	})
}

// EnsureAdminKey makes sure the holder of key is an admin: the key's owner
// is promoted, or a user named "admin" is created (or given the key). It is
// how `fjord serve --admin-key` bootstraps the first admin, and is
// idempotent across restarts.
func (s *Store) EnsureAdminKey(key Key) (User, error) {
	if u, err := s.UserByKey(key.Fingerprint); err == nil {
		if u.Admin {
			return u, nil
		}
		return s.UpdateUser(u.Name, func(u *User) error { u.Admin = true; return nil })
	}
	if _, err := s.User("admin"); err == nil {
		return s.UpdateUser("admin", func(u *User) error {
			u.Admin = true
			u.Keys = append(u.Keys, key)
			return nil
		})
	}
	return s.CreateUser(User{Name: "admin", Admin: true, Keys: []Key{key}})
}
