package storage

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Web UI login buckets. Both are keyed by the SHA-256 of the secret, so
// the database (and a backup of it) holds nothing that logs anyone in.
var (
	bucketLoginTokens = []byte("ui_login_tokens") // sha256(token) -> LoginToken
	bucketSessions    = []byte("ui_sessions")     // sha256(session id) -> Session
)

// ErrLoginToken is returned for a login token that is unknown, used
// already or expired: all three look the same to the holder on purpose.
var ErrLoginToken = errors.New("login link unknown, used already or expired: run `fjord ui login` for a new one")

// ErrNoSession is returned for a session cookie that is unknown or expired.
var ErrNoSession = errors.New("no such session")

// LoginToken is a one-time web UI login for User, until Expires.
type LoginToken struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

// Session is a logged-in web UI session of User. CSRF is the token every
// form of the session carries back.
type Session struct {
	User    string    `json:"user"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// CreateLoginToken returns a random one-time login token for an existing
// user, valid for ttl.
func (s *Store) CreateLoginToken(user string, ttl time.Duration) (string, LoginToken, error) {
	token := rand.Text()
	lt := LoginToken{User: user, Expires: time.Now().UTC().Add(ttl)}
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketUsers).Get([]byte(user)) == nil {
			return notFound("user", user, ErrNotFound)
		}
		if err := expire(tx, bucketLoginTokens, func(v []byte) time.Time { var t LoginToken; _ = json.Unmarshal(v, &t); return t.Expires }); err != nil {
			return err
		}
		return tx.putJSON(bucketLoginTokens, secretKey(token), lt)
	})
	if err != nil {
		return "", LoginToken{}, fmt.Errorf("create login token: %w", err)
	}
	return token, lt, nil
}

// RedeemLoginToken consumes a login token and, in the same transaction,
// opens a session of its user valid for ttl. It returns the session and its
// secret id (the cookie value). A token is good for one redemption only.
func (s *Store) RedeemLoginToken(token string, ttl time.Duration) (string, Session, error) {
	id := rand.Text()
	now := time.Now().UTC()
	sess := Session{CSRF: rand.Text(), Created: now, Expires: now.Add(ttl)}
	err := s.update(func(tx *wtx) error {
		var lt LoginToken
		key := secretKey(token)
		if err := getJSON(tx, bucketLoginTokens, key, &lt); err != nil {
			if errors.Is(err, ErrNotFound) {
				return ErrLoginToken
			}
			return err
		}
		if err := tx.del(bucketLoginTokens, []byte(key)); err != nil {
			return err
		}
		if !now.Before(lt.Expires) {
			return ErrLoginToken
		}
		if tx.Bucket(bucketUsers).Get([]byte(lt.User)) == nil {
			return ErrLoginToken // the user was deleted since
		}
		sess.User = lt.User
		if err := expire(tx, bucketSessions, func(v []byte) time.Time { var t Session; _ = json.Unmarshal(v, &t); return t.Expires }); err != nil {
			return err
		}
		return tx.putJSON(bucketSessions, secretKey(id), sess)
	})
	if errors.Is(err, ErrLoginToken) {
		// The token is deleted even when it had expired: commit that.
		_ = s.update(func(tx *wtx) error { return tx.del(bucketLoginTokens, []byte(secretKey(token))) })
		return "", Session{}, ErrLoginToken
	}
	if err != nil {
		return "", Session{}, fmt.Errorf("open session: %w", err)
	}
	return id, sess, nil
}

// Session returns the live session with this secret id, or ErrNoSession.
func (s *Store) Session(id string) (Session, error) {
	var sess Session
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketSessions, secretKey(id), &sess) })
	if errors.Is(err, ErrNotFound) || (err == nil && !time.Now().Before(sess.Expires)) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	return sess, nil
}

// DeleteSession ends a session (log out). An unknown id is not an error.
func (s *Store) DeleteSession(id string) error {
	return s.update(func(tx *wtx) error { return tx.del(bucketSessions, []byte(secretKey(id))) })
}

// secretKey is the bucket key of a token or session id.
func secretKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// expire deletes the entries of bucket whose expiry has passed; the
// buckets stay small (one entry per login), so a full scan on each write
// is cheaper than an index.
func expire(tx *wtx, bucket []byte, expires func([]byte) time.Time) error {
	now := time.Now()
	var old [][]byte
	_ = tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		if !now.Before(expires(v)) {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range old {
		if err := tx.del(bucket, k); err != nil {
			return err
		}
	}
	return nil
}

// deleteSessionsOf ends every session of a user being deleted, so a new
// user of the same name does not inherit them.
func deleteSessionsOf(tx *wtx, user string) error {
	var keys [][]byte
	err := tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
		var sess Session
		if json.Unmarshal(v, &sess) != nil || sess.User == user {
			keys = append(keys, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range keys {
		if err == nil {
			err = tx.del(bucketSessions, k)
		}
	}
	return err
}
