package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fjordhq/fjord/reconciler"
	"github.com/fjordhq/fjord/storage"
)

// signer signs commits in a work clone the way CI does: git commit -S with
// a real SSH key (gpg.format=ssh) or a real OpenPGP key in its own
// GNUPGHOME.
type signer struct {
	env   []string // GNUPGHOME for OpenPGP
	flags []string // git -c flags
	fpr   string   // what fjord computes for the key
	pub   []byte   // the public key file's content
}

func sshSigner(t *testing.T, name string) signer {
	t.Helper()
	priv := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@ci", "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-lf", priv+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	return signer{flags: []string{"-c", "gpg.format=ssh", "-c", "user.signingKey=" + priv}, fpr: strings.Fields(string(out))[1], pub: pub}
}

func gpgSigner(t *testing.T, email string) signer {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg is not installed")
	}
	home := filepath.Join(t.TempDir(), "g")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	gpg := func(args ...string) string {
		out, err := exec.Command("gpg", append([]string{"--batch", "--homedir", home}, args...)...).Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return string(out)
	}
	gpg("--passphrase", "", "--quick-gen-key", email, "ed25519", "sign", "never")
	fpr := regexp.MustCompile(`(?m)^fpr:+([0-9A-F]+):`).FindStringSubmatch(gpg("--with-colons", "--list-keys", email))[1]
	return signer{env: []string{"GNUPGHOME=" + home}, flags: []string{"-c", "user.signingKey=" + fpr}, fpr: fpr, pub: []byte(gpg("--armor", "--export", email))}
}

// trust adds the signer's public key to fjord as `fjord signkey add` does.
func (s signer) trust(t *testing.T, store *storage.Store, name string) {
	t.Helper()
	k, err := storage.ParseSigningKey(name, s.pub)
	if err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint != s.fpr {
		t.Fatalf("fjord computed fingerprint %s, the key's tools say %s", k.Fingerprint, s.fpr)
	}
	if _, err := store.AddSigningKey(k); err != nil {
		t.Fatal(err)
	}
}

// signedCommit commits everything signed by s (nil: unsigned), pushes and
// refreshes the snapshot, as a push to fjord does.
func (w *work) signedCommit(msg string, s *signer) string {
	w.t.Helper()
	git(w.t, w.dir, "add", "-A")
	args := []string{"commit", "-q", "-m", msg}
	var env []string
	if s != nil {
		args = append(append(append([]string{}, s.flags...), args...), "-S")
		env = s.env
	}
	cmd := exec.Command("git", args...)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), append([]string{"GIT_AUTHOR_NAME=ci", "GIT_AUTHOR_EMAIL=ci@example.com",
		"GIT_COMMITTER_NAME=ci", "GIT_COMMITTER_EMAIL=ci@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + w.dir}, env...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("git commit -S: %v\n%s", err, out)
	}
	git(w.t, w.dir, "push", "-q", "origin", "HEAD:refs/heads/main")
	w.refresh()
	return git(w.t, w.dir, "rev-parse", "HEAD")
}

func signedProject(name string, keyIDs ...string) []byte {
	doc := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: %s
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
`, name)
	if len(keyIDs) > 0 {
		doc += "  signatureKeys:\n"
		for _, id := range keyIDs {
			doc += fmt.Sprintf("  - keyID: %q\n", id)
		}
	}
	return []byte(doc)
}

func projectApp(name, project, repo, path, ns string) []byte {
	return []byte(strings.Replace(string(appDoc(name, repo, path, ns, true, true)), "spec:\n", "spec:\n  project: "+project+"\n", 1))
}

func configMap(name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  v: %q\n", name, value)
}

// TestSignedCommits: a project with signatureKeys applies only commits
// signed by one of them (SSH and OpenPGP, real git commit -S signatures);
// an unsigned commit, one by a key fjord does not know and one by a key
// fjord has but the project does not trust are refused, the app stays on
// the last verified commit and its status says which commit was refused
// and why. A project without signatureKeys applies unsigned commits.
func TestSignedCommits(t *testing.T) {
	c := newCluster(t)
	store := openStore(t, t.TempDir())
	ns := c.env.Namespace(t)
	ctx := context.Background()

	ci, other := sshSigner(t, "ci"), sshSigner(t, "other")
	release, stranger := gpgSigner(t, "release@example.com"), gpgSigner(t, "stranger@example.com")
	ci.trust(t, store, "ci")
	other.trust(t, store, "other")
	release.trust(t, store, "release")

	sshRepo := newWork(t, store, "ssh-signed", "")
	sshRepo.write("app/cm.yaml", configMap("ssh-app", "1"))
	sshRepo.write("plain/cm.yaml", configMap("plain-app", "1"))
	s1 := sshRepo.signedCommit("signed by ci", &ci)
	gpgRepo := newWork(t, store, "gpg-signed", "")
	gpgRepo.write("app/cm.yaml", configMap("gpg-app", "1"))
	g1 := gpgRepo.signedCommit("signed by release", &release)

	rec, _ := c.start(store)

	// A project naming a key fjord does not have is refused, naming it.
	_, err := rec.ApplyProject(signedProject("bad", "SHA256:AAAAnotakey"))
	if !errors.Is(err, reconciler.ErrInvalidApp) || !strings.Contains(err.Error(), "SHA256:AAAAnotakey") || !strings.Contains(err.Error(), "fjord signkey add") {
		t.Fatalf("project with an unknown key: %v", err)
	}
	// keyID: the SSH fingerprint; the OpenPGP long key ID, as Argo CD
	// writes it.
	for _, p := range [][]byte{signedProject("ssh-only", ci.fpr), signedProject("gpg-only", release.fpr[24:]), signedProject("plain")} {
		if _, err := rec.ApplyProject(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.DeleteSigningKey("ci"); !errors.Is(err, storage.ErrSigningKeyInUse) || !strings.Contains(err.Error(), "ssh-only") {
		t.Fatalf("delete of a key a project names: %v", err)
	}

	for _, a := range []struct{ name, project, repo string }{
		{"ssh-app", "ssh-only", "ssh-signed"}, {"plain-app", "plain", "ssh-signed"}, {"gpg-app", "gpg-only", "gpg-signed"},
	} {
		path := "app"
		if a.name == "plain-app" {
			path = "plain"
		}
		if _, err := rec.Apply(ctx, projectApp(a.name, a.project, a.repo, path, ns)); err != nil {
			t.Fatal(err)
		}
	}
	value := func(name string) string {
		u := c.get(gvrCM, ns, name)
		if u == nil {
			return "(absent)"
		}
		v, _, _ := unstructured.NestedString(u.Object, "data", "v")
		return v
	}
	synced := func(app, commit, v string) {
		t.Helper()
		eventually(t, app+" synced at "+commit[:8], func() (bool, string) {
			st := appStatus(t, store, app)
			return st.SyncedCommit == commit && st.Sync == "Synced" && st.Refused == nil && value(app) == v, fmt.Sprintf("%+v value %s", st, value(app))
		})
	}
	synced("ssh-app", s1, "1")
	synced("plain-app", s1, "1")
	synced("gpg-app", g1, "1")

	// refused waits for the sync of commit and checks it was not applied:
	// the cluster keeps the value 1 of the last verified commit.
	refused := func(app, project, commit, lastGood, reason string) {
		t.Helper()
		eventually(t, app+" refuses "+commit[:8], func() (bool, string) {
			st := appStatus(t, store, app)
			return st.Refused != nil && st.Refused.Commit == commit, fmt.Sprintf("%+v", st)
		})
		st := appStatus(t, store, app)
		if st.SyncedCommit != lastGood || st.Sync != "Error" {
			t.Errorf("%s: synced %s, sync %s; want it to stay on %s with an error", app, st.SyncedCommit, st.Sync, lastGood)
		}
		if st.Refused.Project != project || !strings.Contains(st.Refused.Reason, reason) {
			t.Errorf("%s: refusal %+v, want project %s and a reason containing %q", app, st.Refused, project, reason)
		}
		for _, want := range []string{commit[:12], `project "` + project + `"`, reason} {
			if !strings.Contains(st.Error, want) {
				t.Errorf("%s: error %q does not name %q", app, st.Error, want)
			}
		}
		if v := value(app); v != "1" {
			t.Errorf("%s: the cluster holds %q, want the last verified commit's 1", app, v)
		}
	}

	// Unsigned: refused by the SSH project, applied by the plain one.
	sshRepo.write("app/cm.yaml", configMap("ssh-app", "2"))
	sshRepo.write("plain/cm.yaml", configMap("plain-app", "2"))
	s2 := sshRepo.signedCommit("unsigned", nil)
	refused("ssh-app", "ssh-only", s2, s1, "the commit is not signed")
	synced("plain-app", s2, "2")

	// Signed by a key fjord has but the project does not trust.
	sshRepo.write("app/cm.yaml", configMap("ssh-app", "3"))
	s3 := sshRepo.signedCommit("signed by other", &other)
	refused("ssh-app", "ssh-only", s3, s1, "signed by fjord key other ("+other.fpr+"), which is not in the project's signatureKeys")

	// A trusted signature again: applied, the refusal cleared.
	sshRepo.write("app/cm.yaml", configMap("ssh-app", "4"))
	s4 := sshRepo.signedCommit("signed by ci again", &ci)
	synced("ssh-app", s4, "4")

	// OpenPGP: a key fjord does not know, then one the project does not
	// trust (the SSH key ci), then the release key.
	gpgRepo.write("app/cm.yaml", configMap("gpg-app", "2"))
	g2 := gpgRepo.signedCommit("signed by a stranger", &stranger)
	refused("gpg-app", "gpg-only", g2, g1, "signed by a key fjord does not know")
	gpgRepo.write("app/cm.yaml", configMap("gpg-app", "3"))
	g3 := gpgRepo.signedCommit("signed by ci", &ci)
	refused("gpg-app", "gpg-only", g3, g1, "signed by fjord key ci ("+ci.fpr+")")
	gpgRepo.write("app/cm.yaml", configMap("gpg-app", "4"))
	g4 := gpgRepo.signedCommit("signed by release", &release)
	synced("gpg-app", g4, "4")
}
