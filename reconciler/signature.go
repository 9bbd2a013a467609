package reconciler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fjordhq/fjord/internal/gitrun"
	"github.com/fjordhq/fjord/storage"
)

var (
	// gpg's machine-readable line for a good signature: VALIDSIG
	// <signing key fingerprint> ... <primary key fingerprint>; the
	// primary's is last (a subkey may sign for its primary key).
	validSig = regexp.MustCompile(`(?m)^\[GNUPG:\] VALIDSIG ([0-9A-F]{40,64})\b(?:.* ([0-9A-F]{40,64}))?[ \t]*$`)
	// ssh-keygen -Y verify / check-novalidate: `Good "git" signature ... key SHA256:...`
	sshGood = regexp.MustCompile(`Good "git" signature.* key (SHA256:[A-Za-z0-9+/=]+)`)
)

// verifyCommit checks that commit in the repo at dir carries a good
// signature by one of trusted, keys fjord has (keys holds them all, so a
// signature by a key fjord has but the project does not trust is named as
// such). It verifies with git verify-commit against a temporary
// GNUPGHOME and allowed-signers file built from keys, so neither the
// repo's config nor the user's keyring is touched; the temporary files are
// removed before it returns. The error says why the commit is refused.
func verifyCommit(ctx context.Context, git gitrun.Runner, dir, commit string, trusted, keys []storage.SigningKey) error {
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
		if k.Type == storage.SigningKeyOpenPGP {
			imp := git.Tool(ctx, "gpg", "--batch", "--no-tty", "--homedir", gnupg, "--import")
			imp.Stdin = strings.NewReader(k.Public)
			if out, err := imp.CombinedOutput(); err != nil {
				return fmt.Errorf("verify commit %s: import OpenPGP key %s: %w: %s; replace it with fjord signkey add", commit, k.Name, err, strings.TrimSpace(string(out)))
			}
			continue
		}
		// Every SSH key may sign as any principal: which key signed is
		// what is checked below, against the project's keyIDs.
		fmt.Fprintf(&allowed, "* %s\n", strings.TrimSpace(k.Public))
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
		if m[2] != "" {
			signer = m[2]
		}
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
	for _, k := range trusted {
		if k.Fingerprint == signer {
			return nil
		}
	}
	for _, k := range keys {
		if k.Fingerprint == signer {
			signer = fmt.Sprintf("fjord key %s (%s)", k.Name, signer)
		}
	}
	return fmt.Errorf("it is signed by %s, which is not in the project's signatureKeys (untrusted)", signer)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// ErrCommitRefused marks a sync that did not apply its commit because the
// commit's signature does not satisfy the app's project.
var ErrCommitRefused = errors.New("commit refused")

// verifyRevision is the plan's signature gate. When the app's project has
// signatureKeys, commit must carry a good signature by one of them. It
// returns the refusal to show on the app's status and the sync's error
// (wrapping ErrCommitRefused, naming the commit, the project and why), or
// nil, nil when the commit may be applied.
func (r *Reconciler) verifyRevision(ctx context.Context, app *Application, repo, commit string) (*storage.RefusedCommit, error) {
	proj, err := r.project(app.Project())
	if err != nil || proj == nil || len(proj.Spec.SignatureKeys) == 0 {
		return nil, err
	}
	keys, err := r.store.SigningKeys()
	if err != nil {
		return nil, err
	}
	var trusted []storage.SigningKey
	var missing []string
	for _, id := range proj.keyIDs() {
		found := false
		for _, k := range keys {
			if k.Matches(id) {
				trusted, found = append(trusted, k), true
			}
		}
		if !found {
			missing = append(missing, strconv.Quote(id))
		}
	}
	var reason error
	if len(missing) > 0 {
		// PutProject refuses this; a project stored by an older fjord
		// may still name a key that is gone.
		reason = fmt.Errorf("the project names signing key %s, which fjord does not have: add it with `fjord signkey add NAME --file PUBLIC-KEY`", strings.Join(missing, ", "))
	} else {
		reason = verifyCommit(ctx, r.store.Git(), r.store.RepoPath(repo), commit, trusted, keys)
	}
	if reason == nil {
		return nil, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // cut short: not a verdict on the commit
	}
	refused := &storage.RefusedCommit{Commit: commit, Project: proj.Metadata.Name, Reason: reason.Error(), Time: time.Now().UTC()}
	return refused, fmt.Errorf("%w: commit %s of repo %q is not applied: project %q requires a signature by one of its signatureKeys, but %s; the app stays on its last verified commit",
		ErrCommitRefused, short(commit), repo, proj.Metadata.Name, reason)
}
