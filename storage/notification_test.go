package storage_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/storage"
	bolt "go.etcd.io/bbolt"
)

// TestNotifierSecretIsAFile adds a signed notifier: its secret is a 0600
// credential file, nowhere in fjord.db, read back with the notifier,
// replicated to a follower, and removed with the notifier; a record
// written when the secret was kept in fjord.db stays readable.
func TestNotifierSecretIsAFile(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	const secret = "notifier-hmac-secret-4715"
	if _, err := s.AddNotifier(storage.Notifier{Name: "ops", URL: "https://hooks.example.com/x", Format: "json", Secret: secret, On: []string{"sync-failed"}}, nil); err != nil {
		t.Fatal(err)
	}
	n, err := s.Notifier("ops")
	if err != nil || n.Secret != secret {
		t.Fatalf("Notifier: secret %q, %v", n.Secret, err)
	}
	if ns, err := s.Notifiers(); err != nil || len(ns) != 1 || ns[0].Secret != secret {
		t.Fatalf("Notifiers: %d, %v", len(ns), err)
	}
	path := filepath.Join(s.CredentialDir("notifier", "ops"), storage.NotifierSecretFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v, want mode 0600", fi, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "fjord.db"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) || strings.Contains(string(raw), base64.StdEncoding.EncodeToString([]byte(secret))) {
		t.Error("fjord.db holds the notifier's secret")
	}

	f := open(t, t.TempDir())
	replicate(t, s, f)
	if n, err := f.Notifier("ops"); err != nil || n.Secret != secret {
		t.Fatalf("follower's notifier: secret %q, %v", n.Secret, err)
	}

	if err := s.DeleteNotifier("ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.CredentialDir("notifier", "ops")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the secret after delete: %v", err)
	}
	replicate(t, s, f)
	if _, err := os.Stat(f.CredentialDir("notifier", "ops")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the follower's secret after delete: %v", err)
	}

	// A record of before, with the secret in it.
	odir := t.TempDir()
	o, err := storage.Open(context.Background(), odir, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	db, err := bolt.Open(filepath.Join(odir, "fjord.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("notifiers")).Put([]byte("old"), []byte(`{"name":"old","url":"https://hooks.example.com/y","format":"json","secret":"old-secret","on":["sync-failed"]}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	o = open(t, odir)
	if n, err := o.Notifier("old"); err != nil || n.Secret != "old-secret" {
		t.Fatalf("old record: secret %q, %v", n.Secret, err)
	}
}
