package reconciler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/fjordhq/fjord/internal/gitrun"
)

// SigningKey is a public key fjord trusts for commit signatures: an
// ASCII-armored OpenPGP public key or one SSH public key line.
type SigningKey struct {
	// Name is the key's name in fjord.
	Name string
	// Public is the key as given.
	Public []byte
}

// isOpenPGP says whether the key is an armored OpenPGP public key rather
// than an SSH public key line.
func (k SigningKey) isOpenPGP() bool {
	return bytes.Contains(k.Public, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"))
}

var (
	// gpg's machine-readable line for a good signature: VALIDSIG <fingerprint> ...
	validSig = regexp.MustCompile(`(?m)^\[GNUPG:\] VALIDSIG ([0-9A-F]{40,64})\b`)
	// ssh-keygen -Y verify / check-novalidate: `Good "git" signature ... key SHA256:...`
	sshGood = regexp.MustCompile(`Good "git" signature.* key (SHA256:[A-Za-z0-9+/=]+)`)
)

// verifyCommit checks that commit in the repo at dir carries a good
// signature by one of keys whose ID is in keyIDs (an OpenPGP key ID or
// fingerprint suffix, case-insensitive, or an SSH key's SHA256
// fingerprint). It verifies with git verify-commit against a temporary
// GNUPGHOME and allowed-signers file built from keys, so neither the
// repo's config nor the user's keyring is touched; the temporary files are
// removed before it returns. The error says why the commit is refused.
func verifyCommit(ctx context.Context, git gitrun.Runner, dir, commit string, keyIDs []string, keys []SigningKey) error {
	tmp, err := os.MkdirTemp("", "fjord-verify-")
	if err != nil {
		return fmt.Errorf("verify commit %s: temporary keyring: %w", commit, err)
	}
	defer os.RemoveAll(tmp)
	gnupg := filepath.Join(tmp, "gnupg")
	if err := os.Mkdir(gnupg, 0o700); err != nil {
		return fmt.Errorf("verify commit %s: temporary keyring: %w", commit, err)
	}
	var allowed bytes.Buffer
	for _, k := range keys {
		if k.isOpenPGP() {
			imp := exec.CommandContext(ctx, "gpg", "--batch", "--no-tty", "--homedir", gnupg, "--import")
			imp.Stdin = bytes.NewReader(k.Public)
			if out, err := imp.CombinedOutput(); err != nil {
				return fmt.Errorf("verify commit %s: import OpenPGP key %s: %w: %s; replace it with fjord signkey add", commit, k.Name, err, strings.TrimSpace(string(out)))
			}
			continue
		}
		// Every SSH key may sign as any principal: which key signed is
		// what is checked below, against the project's keyIDs.
		fmt.Fprintf(&allowed, "* %s\n", strings.TrimSpace(string(k.Public)))
	}
	signers := filepath.Join(tmp, "allowed_signers")
	if err := os.WriteFile(signers, allowed.Bytes(), 0o600); err != nil {
		return fmt.Errorf("verify commit %s: temporary allowed signers: %w", commit, err)
	}
	cmd := git.Command(ctx, dir, []string{"GNUPGHOME=" + gnupg},
		"-c", "gpg.ssh.allowedSignersFile="+signers, "verify-commit", "--raw", commit)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	text := out.String()
	var signer string
	if m := validSig.FindStringSubmatch(text); m != nil {
		signer = m[1]
	} else if m := sshGood.FindStringSubmatch(text); m != nil {
		signer = m[1]
	}
	switch {
	case runErr != nil && signer == "" && strings.TrimSpace(text) == "":
		return errors.New("the commit is not signed")
	case runErr != nil && signer == "":
		if strings.Contains(text, "NO_PUBKEY") || strings.Contains(text, "No principal matched") {
			return errors.New("it is signed by a key fjord does not know")
		}
		return fmt.Errorf("its signature does not verify: %s", lastLine(text))
	case runErr != nil:
		return fmt.Errorf("its signature by %s does not verify: %s", signer, lastLine(text))
	}
	for _, id := range keyIDs {
		if keyIDMatches(id, signer) {
			return nil
		}
	}
	return fmt.Errorf("it is signed by %s, which is not in the project's signatureKeys (untrusted)", signer)
}

// keyIDMatches says whether a signatureKeys keyID names the signing key:
// an SSH fingerprint exactly, an OpenPGP key ID or fingerprint as a
// case-insensitive suffix of the fingerprint (as Argo CD matches them).
func keyIDMatches(id, signer string) bool {
	id = strings.TrimSpace(id)
	if strings.HasPrefix(signer, "SHA256:") {
		return id == signer
	}
	return len(id) >= 16 && strings.HasSuffix(strings.ToUpper(signer), strings.ToUpper(id))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
