package storage

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	bolt "go.etcd.io/bbolt"
	gossh "golang.org/x/crypto/ssh"
)

// bucketSigningKeys holds the public keys fjord trusts for commit
// signatures: key name -> SigningKey. Which keys an app's commits must be
// signed by is its project's signatureKeys; this bucket is where those
// names and key IDs resolve.
var bucketSigningKeys = []byte("signingkeys")

// SigningKeyType is the kind of a signing key, as git's gpg.format names it.
type SigningKeyType string

// Signing key types.
const (
	// SigningKeyOpenPGP is an OpenPGP public key (gpg.format=openpgp).
	SigningKeyOpenPGP SigningKeyType = "openpgp"
	// SigningKeySSH is an SSH public key (gpg.format=ssh).
	SigningKeySSH SigningKeyType = "ssh"
)

// SigningKey is a public key fjord trusts for commit signatures.
type SigningKey struct {
	// Name is the key's name in fjord (`fjord signkey add NAME`).
	Name string         `json:"name"`
	Type SigningKeyType `json:"type"`
	// Fingerprint is, for OpenPGP, the primary key's fingerprint in
	// upper-case hex as gpg prints it; for SSH, the SHA256 fingerprint as
	// `ssh-keygen -lf` prints it (SHA256:...).
	Fingerprint string `json:"fingerprint"`
	// KeyID is the OpenPGP long key ID (the fingerprint's last 16 hex
	// digits, as Argo CD's signatureKeys hold it); empty for SSH.
	KeyID string `json:"keyID,omitempty"`
	// Identity is the OpenPGP primary user ID or the SSH key's comment.
	Identity string `json:"identity,omitempty"`
	// Public is the armored OpenPGP public key or the SSH public key line.
	Public  string    `json:"public"`
	Created time.Time `json:"created"`
}

// Matches says whether id, an entry of a project's signatureKeys, names
// the key: its fjord name, its SSH SHA256 fingerprint, or its OpenPGP
// fingerprint or long key ID (16 hex digits or more, a suffix of the
// fingerprint, case-insensitive, as Argo CD matches key IDs).
func (k SigningKey) Matches(id string) bool {
	id = strings.TrimSpace(id)
	switch {
	case id == "":
		return false
	case id == k.Name:
		return true
	case k.Type == SigningKeySSH:
		return id == k.Fingerprint
	default:
		id = strings.ToUpper(strings.ReplaceAll(id, " ", ""))
		return len(id) >= 16 && strings.HasSuffix(k.Fingerprint, id)
	}
}

const (
	pgpPublicHeader  = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	pgpPrivateHeader = "-----BEGIN PGP PRIVATE KEY BLOCK-----"
)

// ParseSigningKey reads a public key file for `fjord signkey add`: an
// ASCII-armored OpenPGP public key holding one key (`gpg --armor --export
// KEYID`), or one SSH public key line (the content of id_ed25519.pub). The
// error says what is wrong with the file and what to give instead.
func ParseSigningKey(name string, data []byte) (SigningKey, error) {
	if err := validateSigningKeyName(name); err != nil {
		return SigningKey{}, err
	}
	text := strings.TrimSpace(string(data))
	k := SigningKey{Name: name}
	switch {
	case text == "":
		return SigningKey{}, fmt.Errorf("signing key %q: the file is empty: give an armored OpenPGP public key (gpg --armor --export KEYID) or an SSH public key (.pub)", name)
	case strings.Contains(text, pgpPrivateHeader) || strings.Contains(text, "PRIVATE KEY-----"):
		return SigningKey{}, fmt.Errorf("signing key %q: the file holds a private key: give the public key only (gpg --armor --export KEYID, or the .pub file of an SSH key)", name)
	case strings.Contains(text, pgpPublicHeader):
		ents, err := openpgp.ReadArmoredKeyRing(strings.NewReader(text))
		if err != nil {
			return SigningKey{}, fmt.Errorf("signing key %q: not a readable OpenPGP public key: %w (export it with gpg --armor --export KEYID)", name, err)
		}
		if len(ents) != 1 {
			return SigningKey{}, fmt.Errorf("signing key %q: the file holds %d OpenPGP keys, want one: export each with gpg --armor --export KEYID and add it under its own name", name, len(ents))
		}
		e := ents[0]
		if e.Revoked(time.Now()) {
			return SigningKey{}, fmt.Errorf("signing key %q: the OpenPGP key %X is revoked: a revoked key cannot be trusted", name, e.PrimaryKey.Fingerprint)
		}
		k.Type = SigningKeyOpenPGP
		k.Fingerprint = strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
		k.KeyID = k.Fingerprint[len(k.Fingerprint)-16:]
		if id := e.PrimaryIdentity(); id != nil {
			k.Identity = id.Name
		}
		k.Public = text + "\n"
	default:
		if strings.Count(text, "\n") > 0 {
			return SigningKey{}, fmt.Errorf("signing key %q: the file holds %d lines: give one SSH public key line, or an armored OpenPGP public key (gpg --armor --export KEYID)", name, strings.Count(text, "\n")+1)
		}
		pk, comment, _, _, err := gossh.ParseAuthorizedKey([]byte(text))
		if err != nil {
			return SigningKey{}, fmt.Errorf("signing key %q: neither an armored OpenPGP public key nor an SSH public key: %w (give gpg --armor --export KEYID, or the .pub file of an SSH key)", name, err)
		}
		if _, ok := pk.(*gossh.Certificate); ok {
			return SigningKey{}, fmt.Errorf("signing key %q: SSH certificates are not supported: give the key's .pub file", name)
		}
		k.Type = SigningKeySSH
		k.Fingerprint = gossh.FingerprintSHA256(pk)
		k.Identity = comment
		k.Public = strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk)))
		if comment != "" {
			k.Public += " " + comment
		}
	}
	return k, nil
}

func validateSigningKeyName(name string) error { return validateSimpleName("signing key", name) }

// validateSimpleName checks the name of a signing key or a notifier: one
// segment of [A-Za-z0-9._-], at most 64 characters, as user names.
func validateSimpleName(kind, name string) error {
	if len(name) > 64 {
		return fmt.Errorf("%w: %s name longer than 64 characters", ErrInvalidName, kind)
	}
	if err := checkSegment(name); err != nil {
		return fmt.Errorf("%w: %s name %q: %v", ErrInvalidName, kind, name, err)
	}
	return nil
}

// AddSigningKey stores a key from ParseSigningKey. The name must be free
// and the same key must not be stored under another name: one key, one
// name, so a project's signatureKeys resolve without doubt.
func (s *Store) AddSigningKey(k SigningKey) (SigningKey, error) {
	if err := validateSigningKeyName(k.Name); err != nil {
		return SigningKey{}, err
	}
	if k.Fingerprint == "" || k.Public == "" {
		return SigningKey{}, fmt.Errorf("signing key %q: no key: read it with ParseSigningKey", k.Name)
	}
	if k.Created.IsZero() {
		k.Created = time.Now().UTC()
	}
	err := s.update(func(tx *wtx) error {
		b := tx.Bucket(bucketSigningKeys)
		if b.Get([]byte(k.Name)) != nil {
			return fmt.Errorf("signing key %q: %w: delete it first (fjord signkey delete %s) to replace it", k.Name, ErrExists, k.Name)
		}
		err := b.ForEach(func(name, v []byte) error {
			var o SigningKey
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("decode signing key %q: %w", name, err)
			}
			if o.Fingerprint == k.Fingerprint {
				return fmt.Errorf("signing key %s: %w under the name %q", k.Fingerprint, ErrExists, o.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.putJSON(bucketSigningKeys, k.Name, k)
	})
	if err != nil {
		return SigningKey{}, err
	}
	return k, nil
}

// SigningKey returns one trusted key, or an error matching ErrNotFound.
func (s *Store) SigningKey(name string) (SigningKey, error) {
	var k SigningKey
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketSigningKeys, name, &k) })
	if err != nil {
		return SigningKey{}, notFound("signing key", name, err)
	}
	return k, nil
}

// SigningKeys returns every trusted key, sorted by name.
func (s *Store) SigningKeys() ([]SigningKey, error) {
	var out []SigningKey
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = signingKeys(tx)
		return err
	})
	return out, err
}

func signingKeys(tx reader) ([]SigningKey, error) {
	var out []SigningKey
	err := tx.Bucket(bucketSigningKeys).ForEach(func(name, v []byte) error {
		var k SigningKey
		if err := json.Unmarshal(v, &k); err != nil {
			return fmt.Errorf("decode signing key %q: %w", name, err)
		}
		out = append(out, k)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// ErrSigningKeyInUse is returned by DeleteSigningKey while a project's
// signatureKeys name the key.
var ErrSigningKeyInUse = errors.New("signing key in use")

// DeleteSigningKey removes a trusted key. It refuses, in the same
// transaction, while a project's signatureKeys name it, so no project is
// left requiring a key fjord no longer has.
func (s *Store) DeleteSigningKey(name string) error {
	return s.update(func(tx *wtx) error {
		var k SigningKey
		if err := getJSON(tx, bucketSigningKeys, name, &k); err != nil {
			return notFound("signing key", name, err)
		}
		var users []string
		err := tx.Bucket(bucketProjects).ForEach(func(pn, v []byte) error {
			var p Project
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode project %q: %w", pn, err)
			}
			for _, id := range p.SignatureKeys {
				if k.Matches(id) {
					users = append(users, fmt.Sprintf("%s (keyID %s)", p.Name, id))
					break
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("signing key %q: %w by project %s: remove it from their spec.signatureKeys (fjord project apply -f FILE) first", name, ErrSigningKeyInUse, strings.Join(users, ", "))
		}
		return tx.del(bucketSigningKeys, []byte(name))
	})
}

// missingSigningKeys returns the ids that match no stored key.
func missingSigningKeys(tx reader, ids []string) ([]string, error) {
	keys, err := signingKeys(tx)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, id := range ids {
		found := false
		for _, k := range keys {
			if k.Matches(id) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// ErrSigningKeyMissing is returned when a project names a signing key
// fjord does not have.
var ErrSigningKeyMissing = errors.New("no such signing key")

// signingKeysMissing is the error for ids that match no stored key.
func signingKeysMissing(project string, ids []string) error {
	return fmt.Errorf("project %q: spec.signatureKeys %s: %w in fjord: add it with `fjord signkey add NAME --file PUBLIC-KEY` (keyID is the key's fjord name, its OpenPGP key ID or fingerprint, or its SSH SHA256: fingerprint)", project, strings.Join(quoteAll(ids), ", "), ErrSigningKeyMissing)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = quote(s)
	}
	return out
}
