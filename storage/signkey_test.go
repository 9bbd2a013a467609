package storage_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

// sshSigningKey makes a real ed25519 key with ssh-keygen and returns its
// private and public files and the fingerprint ssh-keygen prints.
func sshSigningKey(t *testing.T, comment string) (priv, pub, fpr string) {
	t.Helper()
	priv = filepath.Join(t.TempDir(), "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	out, err := exec.Command("ssh-keygen", "-lf", priv+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	return priv, priv + ".pub", strings.Fields(string(out))[1]
}

// gpgSigningKeys makes real OpenPGP keys with gpg in a temporary
// GNUPGHOME and returns gpg, run there, and each key's fingerprint.
func gpgSigningKeys(t *testing.T, emails ...string) (gpg func(args ...string) string, fprs []string) {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg is not installed")
	}
	home := filepath.Join(t.TempDir(), "g")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	gpg = func(args ...string) string {
		out, err := exec.Command("gpg", append([]string{"--batch", "--homedir", home}, args...)...).Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return string(out)
	}
	for _, e := range emails {
		gpg("--passphrase", "", "--quick-gen-key", e, "ed25519", "sign", "never")
		fprs = append(fprs, regexp.MustCompile(`(?m)^fpr:+([0-9A-F]+):`).FindStringSubmatch(gpg("--with-colons", "--list-keys", e))[1])
	}
	return gpg, fprs
}

func TestParseSigningKey(t *testing.T) {
	priv, pub, sshFpr := sshSigningKey(t, "ci@example.com")
	line, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	k, err := storage.ParseSigningKey("ci", line)
	if err != nil {
		t.Fatal(err)
	}
	if k.Type != storage.SigningKeySSH || k.Fingerprint != sshFpr || k.Identity != "ci@example.com" || k.KeyID != "" {
		t.Errorf("ssh key: %+v, want fingerprint %s", k, sshFpr)
	}
	for _, id := range []string{"ci", sshFpr} {
		if !k.Matches(id) {
			t.Errorf("ssh key does not match %q", id)
		}
	}
	if k.Matches(sshFpr[:20]) || k.Matches("") {
		t.Error("ssh key matches a prefix of its fingerprint or nothing")
	}

	gpg, fprs := gpgSigningKeys(t, "release@example.com", "other@example.com")
	armored := gpg("--armor", "--export", "release@example.com")
	g, err := storage.ParseSigningKey("release", []byte(armored))
	if err != nil {
		t.Fatal(err)
	}
	if g.Type != storage.SigningKeyOpenPGP || g.Fingerprint != fprs[0] || g.KeyID != fprs[0][24:] || g.Identity != "release@example.com" {
		t.Errorf("openpgp key: %+v, want fingerprint %s", g, fprs[0])
	}
	for _, id := range []string{"release", fprs[0], fprs[0][24:], strings.ToLower(fprs[0][24:])} {
		if !g.Matches(id) {
			t.Errorf("openpgp key does not match %q", id)
		}
	}
	if g.Matches(fprs[0][32:]) || g.Matches(fprs[1]) {
		t.Error("openpgp key matches a short key ID or another key")
	}

	privSSH, err := os.ReadFile(priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "the file is empty"},
		{"ssh private", string(privSSH), "holds a private key"},
		{"gpg private", gpg("--armor", "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", "release@example.com"), "holds a private key"},
		{"two gpg keys", gpg("--armor", "--export"), "holds 2 OpenPGP keys, want one"},
		{"garbage", "ssh-ed25519 not-base64", "neither an armored OpenPGP public key nor an SSH public key"},
		{"two ssh lines", string(line) + string(line), "holds 2 lines"},
		{"damaged armor", strings.Replace(armored, "\n\n", "\n\n!!", 1), "not a readable OpenPGP public key"},
	} {
		if _, err := storage.ParseSigningKey("k", []byte(c.data)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ParseSigningKey = %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := storage.ParseSigningKey("../x", line); !errors.Is(err, storage.ErrInvalidName) {
		t.Errorf("bad name: %v", err)
	}
}

func TestSigningKeysAndProjects(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	_, pub, fpr := sshSigningKey(t, "ci")
	line, _ := os.ReadFile(pub)
	k, err := storage.ParseSigningKey("ci", line)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddSigningKey(k); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddSigningKey(k); !errors.Is(err, storage.ErrExists) {
		t.Errorf("second add under the same name: %v", err)
	}
	k2 := k
	k2.Name = "ci-again"
	if _, err := s.AddSigningKey(k2); !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), `"ci"`) {
		t.Errorf("the same key under another name: %v", err)
	}

	// A project may name only keys fjord has; nothing is stored otherwise.
	_, err = s.PutProject("prod", "doc", "", []string{"ci", "SHA256:nope"})
	if !errors.Is(err, storage.ErrSigningKeyMissing) || !strings.Contains(err.Error(), `"SHA256:nope"`) || !strings.Contains(err.Error(), "fjord signkey add") {
		t.Fatalf("project naming a missing key: %v", err)
	}
	if _, err := s.Project("prod"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the refused project was stored: %v", err)
	}
	if _, err := s.PutProject("prod", "doc", "", []string{fpr}); err != nil {
		t.Fatal(err)
	}

	// A key a project names is not deleted, and the error names the project.
	err = s.DeleteSigningKey("ci")
	if !errors.Is(err, storage.ErrSigningKeyInUse) || !strings.Contains(err.Error(), "prod") {
		t.Fatalf("delete of a key in use: %v", err)
	}
	if err := s.DeleteSigningKey("nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("delete of a missing key: %v", err)
	}

	// Kept across a restart.
	s.Close()
	s = open(t, dir)
	keys, err := s.SigningKeys()
	if err != nil || len(keys) != 1 || keys[0].Fingerprint != fpr || keys[0].Public != k.Public {
		t.Fatalf("after restart: %+v, %v", keys, err)
	}
	if p, err := s.Project("prod"); err != nil || len(p.SignatureKeys) != 1 {
		t.Fatalf("project after restart: %+v, %v", p, err)
	}

	// Once the project lets go, the key can go.
	if _, err := s.PutProject("prod", "doc", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSigningKey("ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SigningKey("ci"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted key still there: %v", err)
	}
}
