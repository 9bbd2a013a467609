package reconciler

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/internal/gitrun"
	"github.com/fjordhq/fjord/storage"
)

// sigRepo is a git repo whose commits the test signs with real keys.
type sigRepo struct {
	t   *testing.T
	dir string
	env []string
}

func newSigRepo(t *testing.T) *sigRepo {
	t.Helper()
	r := &sigRepo{t: t, dir: t.TempDir()}
	r.env = gitrun.Env("GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	r.git("init", "-q")
	return r
}

func (r *sigRepo) run(env []string, name string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = r.dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *sigRepo) git(args ...string) string { return r.run(r.env, "git", args...) }

// commit makes a commit signed with sign (-c flags for git commit -S, nil
// for unsigned) and returns its hash.
func (r *sigRepo) commit(msg string, env []string, sign ...string) string {
	args := append(sign, "commit", "-q", "--allow-empty", "-m", msg)
	if len(sign) > 0 {
		args = append(args, "-S")
	}
	r.run(append(r.env, env...), "git", args...)
	return r.git("rev-parse", "HEAD")
}

func sshKey(t *testing.T, name string) (priv string, pub storage.SigningKey, fpr string) {
	t.Helper()
	priv = filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	data, err := os.ReadFile(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-lf", priv+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	return priv, parseKey(t, name, data), strings.Fields(string(out))[1]
}

func gpgKey(t *testing.T, email string) (home string, pub storage.SigningKey, fpr string) {
	return gpgKeyWith(t, email, false)
}

// gpgKeyWith makes an OpenPGP key; with subkey, the primary key only
// certifies and a subkey signs, as many release keys are set up.
func gpgKeyWith(t *testing.T, email string, subkey bool) (home string, pub storage.SigningKey, fpr string) {
	t.Helper()
	home = filepath.Join(t.TempDir(), "g")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	gpg := func(args ...string) string {
		cmd := exec.Command("gpg", append([]string{"--batch", "--homedir", home}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return string(out)
	}
	usage := "sign"
	if subkey {
		usage = "cert"
	}
	gpg("--passphrase", "", "--quick-gen-key", email, "ed25519", usage, "never")
	fpr = regexp.MustCompile(`(?m)^fpr:+([0-9A-F]+):`).FindStringSubmatch(gpg("--with-colons", "--list-keys", email))[1]
	if subkey {
		gpg("--passphrase", "", "--quick-add-key", fpr, "ed25519", "sign", "never")
	}
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	return home, parseKey(t, strings.Split(email, "@")[0], []byte(gpg("--armor", "--export", email))), fpr
}

func parseKey(t *testing.T, name string, data []byte) storage.SigningKey {
	t.Helper()
	k, err := storage.ParseSigningKey(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyCommit(t *testing.T) {
	ctx := context.Background()
	r := newSigRepo(t)
	sshPriv, sshPub, _ := sshKey(t, "ci")
	otherPriv, otherPub, otherFpr := sshKey(t, "other")
	gpgHome, gpgPub, gpgFpr := gpgKey(t, "release@example.com")
	strangerHome, _, _ := gpgKey(t, "stranger@example.com")
	knownHome, knownPub, knownFpr := gpgKey(t, "known@example.com")
	subHome, subPub, subFpr := gpgKeyWith(t, "sub@example.com", true)
	sshSign := func(key string) []string {
		return []string{"-c", "gpg.format=ssh", "-c", "user.signingKey=" + key}
	}
	keys := []storage.SigningKey{sshPub, otherPub, gpgPub, knownPub, subPub}
	project := []storage.SigningKey{sshPub, gpgPub, subPub}

	for _, c := range []struct {
		name, commit, want string
	}{
		{"ssh signed", r.commit("ssh", nil, sshSign(sshPriv)...), ""},
		{"unsigned", r.commit("plain", nil), "not signed"},
		{"ssh untrusted", r.commit("other", nil, sshSign(otherPriv)...), "signed by fjord key other (" + otherFpr + "), which is not in the project's signatureKeys"},
		{"gpg signed", r.commit("gpg", []string{"GNUPGHOME=" + gpgHome}, "-c", "user.signingKey="+gpgFpr), ""},
		{"gpg subkey signed", r.commit("sub", []string{"GNUPGHOME=" + subHome}, "-c", "user.signingKey="+subFpr), ""},
		{"gpg unknown", r.commit("stranger", []string{"GNUPGHOME=" + strangerHome}, "-c", "user.signingKey=stranger@example.com"), "a key fjord does not know"},
		{"gpg untrusted", r.commit("known", []string{"GNUPGHOME=" + knownHome}, "-c", "user.signingKey="+knownFpr), "signed by fjord key known (" + knownFpr + "), which is not in the project's signatureKeys"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := verifyCommit(ctx, gitrun.Runner{}, r.dir, c.commit, project, keys)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("verifyCommit: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("verifyCommit = %v, want an error containing %q", err, c.want)
			}
		})
	}
	// The repo's config is never written.
	if out := r.git("config", "--local", "--list"); strings.Contains(out, "allowedsigners") {
		t.Errorf("repo config gained the allowed signers file: %s", out)
	}
}
