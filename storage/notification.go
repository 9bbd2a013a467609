package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Notification buckets. The notify package owns their meaning: which
// events there are, when one is new, how it is sent. Storage keeps them
// atomic: an event is marked seen and its delivery queued in one
// transaction, so it is sent once, even across a restart.
var (
	// bucketNotifiers: notifier name -> Notifier.
	bucketNotifiers = []byte("notifiers")
	// bucketNotifySeen: notifier "\x00" subject -> the key of the last
	// event of that subject the notifier was given.
	bucketNotifySeen = []byte("notify_seen")
	// bucketNotifyDeliveries: notifier -> nested log, sequence (uint64
	// big endian) -> Delivery.
	bucketNotifyDeliveries = []byte("notify_deliveries")
)

// maxDeliveries bounds each notifier's delivery history.
const maxDeliveries = 200

// Notifier is a webhook fjord POSTs events to.
type Notifier struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Format is the body: "json" (fjord's event document) or "slack" (a
	// Slack incoming-webhook message).
	Format string `json:"format"`
	// Secret signs each body (HMAC-SHA256). It never leaves the server:
	// the admin API reports only whether there is one. It is kept in a
	// 0600 credential file, as mirror credentials are, not in fjord.db
	// (a record written before that holds it here, and stays readable).
	Secret string `json:"secret,omitempty"`
	// On are the event types sent.
	On []string `json:"on"`
	// AppGlob limits app events to apps whose name matches; empty
	// means every app.
	AppGlob string    `json:"appGlob,omitempty"`
	Created time.Time `json:"created"`
}

// Delivery is one event for one notifier and every attempt to send it.
type Delivery struct {
	// Seq numbers the notifier's deliveries, from 1.
	Seq      uint64 `json:"seq"`
	Notifier string `json:"notifier"`
	// ID is unique across notifiers: NOTIFIER-SEQ. Receivers see it in a
	// header, to drop a duplicate after a retry whose answer was lost.
	ID      string    `json:"id"`
	Event   string    `json:"event"`
	Subject string    `json:"subject"`
	Body    []byte    `json:"body"`
	Created time.Time `json:"created"`
	// State is "pending", "delivered" or "failed" (retries spent).
	State    string    `json:"state"`
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Attempt is one POST of a delivery.
type Attempt struct {
	Time time.Time `json:"time"`
	// Code is the HTTP status answered; 0 when none came.
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// NotifierSecretFile is the name of a notifier's secret file in its
// CredentialDir("notifier", NAME).
const NotifierSecretFile = "secret"

// storedNotifier is a notifier's record: its secret, when it has one, is
// in its credential file.
type storedNotifier struct {
	Notifier
	SecretFile bool `json:"secretFile,omitempty"`
}

// decodeNotifier reads a notifier's record and, when its secret is in a
// file, the secret.
func (s *Store) decodeNotifier(raw []byte) (Notifier, error) {
	var sn storedNotifier
	if err := json.Unmarshal(raw, &sn); err != nil {
		return Notifier{}, err
	}
	n := sn.Notifier
	if sn.SecretFile {
		data, err := os.ReadFile(filepath.Join(s.CredentialDir("notifier", n.Name), NotifierSecretFile))
		if err != nil {
			// The path names the file, never its content.
			return Notifier{}, fmt.Errorf("notifier %q: read its secret: %w", n.Name, err)
		}
		n.Secret = string(data)
	}
	return n, nil
}

// AddNotifier stores a new notifier with seen, the event keys of every
// subject as things stand (so it is sent what happens from now on, not
// the past).
func (s *Store) AddNotifier(n Notifier, seen map[string]string) (Notifier, error) {
	if err := validateSimpleName("notifier", n.Name); err != nil {
		return Notifier{}, err
	}
	if n.Created.IsZero() {
		n.Created = time.Now().UTC()
	}
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketNotifiers).Get([]byte(n.Name)) != nil {
			return fmt.Errorf("notifier %q: %w: delete it first (fjord notify delete %s)", n.Name, ErrExists, n.Name)
		}
		for subject, key := range seen {
			if err := tx.put(bucketNotifySeen, seenKey(n.Name, subject), []byte(key)); err != nil {
				return err
			}
		}
		rec := storedNotifier{Notifier: n}
		if n.Secret != "" {
			// The file and the record that names it in one change.
			files := map[string][]byte{NotifierSecretFile: []byte(n.Secret)}
			if err := tx.writeSecrets(s, s.CredentialDir("notifier", n.Name), files); err != nil {
				return fmt.Errorf("notifier %q: write its secret: %w", n.Name, err)
			}
			rec.Secret, rec.SecretFile = "", true
		}
		return tx.putJSON(bucketNotifiers, n.Name, rec)
	})
	if err != nil {
		return Notifier{}, err
	}
	return n, nil
}

func seenKey(notifier, subject string) []byte { return []byte(notifier + "\x00" + subject) }

// Notifier returns one notifier, or an error matching ErrNotFound.
func (s *Store) Notifier(name string) (Notifier, error) {
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketNotifiers).Get([]byte(name)); v != nil {
			raw = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return Notifier{}, err
	}
	if raw == nil {
		return Notifier{}, notFound("notifier", name, ErrNotFound)
	}
	n, err := s.decodeNotifier(raw)
	if err != nil {
		return Notifier{}, fmt.Errorf("decode notifier %q: %w", name, err)
	}
	return n, nil
}

// Notifiers returns every notifier, sorted by name.
func (s *Store) Notifiers() ([]Notifier, error) {
	var out []Notifier
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNotifiers).ForEach(func(k, v []byte) error {
			n, err := s.decodeNotifier(v)
			if err != nil {
				return fmt.Errorf("decode notifier %q: %w", k, err)
			}
			out = append(out, n)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// DeleteNotifier removes a notifier, what it has seen and its deliveries.
func (s *Store) DeleteNotifier(name string) error {
	dir := s.CredentialDir("notifier", name)
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketNotifiers).Get([]byte(name)) == nil {
			return notFound("notifier", name, ErrNotFound)
		}
		// Its secret file goes in the same change, removed below once it
		// is committed.
		tx.removeCredentials(s, dir)
		if err := tx.delPrefix(bucketNotifySeen, []byte(name+"\x00")); err != nil {
			return err
		}
		if err := tx.dropNested(bucketNotifyDeliveries, name); err != nil {
			return err
		}
		return tx.del(bucketNotifiers, []byte(name))
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("notifier %q: remove its secret: %w", name, err)
	}
	return nil
}

// NotifySeen returns the key of the last event of subject the notifier
// was given ("" when none, or the condition ended).
func (s *Store) NotifySeen(notifier, subject string) (string, error) {
	var key string
	err := s.db.View(func(tx *bolt.Tx) error {
		key = string(tx.Bucket(bucketNotifySeen).Get(seenKey(notifier, subject)))
		return nil
	})
	return key, err
}

// RecordNotifyEvent moves subject's seen key for the notifier to key and,
// when d is not nil and key differs from the seen one, queues d in the
// same transaction. It returns the queued delivery (with Seq and ID) and
// whether one was queued: an event already seen is never queued twice.
func (s *Store) RecordNotifyEvent(notifier, subject, key string, d *Delivery) (Delivery, bool, error) {
	var out Delivery
	queued := false
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketNotifiers).Get([]byte(notifier)) == nil {
			return notFound("notifier", notifier, ErrNotFound)
		}
		sk := seenKey(notifier, subject)
		if string(tx.Bucket(bucketNotifySeen).Get(sk)) == key {
			return nil
		}
		if key == "" {
			return tx.del(bucketNotifySeen, sk)
		}
		if err := tx.put(bucketNotifySeen, sk, []byte(key)); err != nil {
			return err
		}
		if d == nil {
			return nil
		}
		b, err := tx.nested(bucketNotifyDeliveries, notifier)
		if err != nil {
			return err
		}
		seq, err := b.nextSequence()
		if err != nil {
			return err
		}
		out = *d
		out.Seq, out.Notifier, out.ID, out.Subject = seq, notifier, fmt.Sprintf("%s-%d", notifier, seq), subject
		if out.State == "" {
			out.State = DeliveryPending
		}
		if out.Created.IsZero() {
			out.Created = time.Now().UTC()
		}
		raw, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode delivery %s of notifier %q: %w", out.ID, notifier, err)
		}
		if err := b.put(binary.BigEndian.AppendUint64(nil, seq), raw); err != nil {
			return fmt.Errorf("store delivery %s of notifier %q: %w", out.ID, notifier, err)
		}
		queued = true
		return trimFront(b, maxDeliveries, nil)
	})
	return out, queued, err
}

// UpdateDelivery stores a delivery's new state and attempts. A delivery
// trimmed or deleted meanwhile is not written again.
func (s *Store) UpdateDelivery(d Delivery) error {
	return s.update(func(tx *wtx) error {
		nb := tx.Bucket(bucketNotifyDeliveries).Bucket([]byte(d.Notifier))
		key := binary.BigEndian.AppendUint64(nil, d.Seq)
		if nb == nil || nb.Get(key) == nil {
			return nil
		}
		b, err := tx.nested(bucketNotifyDeliveries, d.Notifier)
		if err != nil {
			return err
		}
		raw, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode delivery %s of notifier %q: %w", d.ID, d.Notifier, err)
		}
		if err := b.put(key, raw); err != nil {
			return fmt.Errorf("store delivery %s of notifier %q: %w", d.ID, d.Notifier, err)
		}
		return nil
	})
}

// Deliveries returns up to n of the notifier's deliveries, newest first.
func (s *Store) Deliveries(notifier string, n int) ([]Delivery, error) {
	return readLogJSON[Delivery](s.db, bucketNotifyDeliveries, notifier, n)
}

// PendingDeliveries returns every delivery still to be sent, oldest first
// per notifier: what a restart resumes.
func (s *Store) PendingDeliveries() ([]Delivery, error) {
	var out []Delivery
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNotifyDeliveries).ForEachBucket(func(name []byte) error {
			return tx.Bucket(bucketNotifyDeliveries).Bucket(name).ForEach(func(_, v []byte) error {
				var d Delivery
				if err := json.Unmarshal(v, &d); err != nil {
					return fmt.Errorf("decode delivery of %q: %w", name, err)
				}
				if d.State == DeliveryPending {
					out = append(out, d)
				}
				return nil
			})
		})
	})
	return out, err
}
