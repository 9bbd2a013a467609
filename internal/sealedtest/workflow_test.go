package sealedtest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/fjordtest"
	"github.com/fjordhq/fjord/internal/sealedtest"
	"github.com/fjordhq/fjord/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// waitFor bounds every wait: behaviour, never timing, is tested.
const waitFor = 90 * time.Second

// startController runs the real controller against env until the test
// ends; the test fails if the controller died before that.
func startController(t *testing.T, env *testenv.Env) *sealedtest.Controller {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the Sealed Secrets controller runs in a mount namespace of its own (unshare -m): needs root")
	}
	c, err := sealedtest.Start(t.Context(), sealedtest.Options{
		Kubeconfig: env.Kubeconfig(), Server: env.URL(), CAFile: env.CAFile(), Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// sh runs a shell pipeline with pipefail in dir, kubeseal and kubectl on
// PATH, as a user types it; it returns the combined output.
func sh(t *testing.T, dir, bins, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-o", "pipefail", "-ec", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bins+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// appStatus is the part of `fjord app get -o json` the test reads.
type appStatus struct {
	Status struct {
		Sync         string `json:"sync"`
		Error        string `json:"error"`
		SyncedCommit string `json:"syncedCommit"`
	} `json:"status"`
}

func getApp(t *testing.T, s *fjordtest.Server, name string) appStatus {
	t.Helper()
	out, err := s.Fjord("app", "get", name, "-o", "json")
	if err != nil {
		t.Fatalf("app get %s: %v\n%s", name, err, out)
	}
	var a appStatus
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("app get %s -o json: %v\n%s", name, err, out)
	}
	return a
}

// TestSealedSecretWorkflow is the seeds' secrets workflow end to end, on
// the real parts: a Secret made with kubectl --dry-run and sealed by the
// real kubeseal with the real controller's certificate, committed and
// pushed to fjord over SSH, applied by fjord's app, and unsealed by the
// real controller into a Secret with the data the user typed. The
// SealedSecret CRD is not installed when the app is first applied: the
// sync fails saying the Sealed Secrets controller is not installed, and
// once the CRD appears the app syncs by itself, with no push.
func TestSealedSecretWorkflow(t *testing.T) {
	env := testenv.Shared(t)
	ctrl := startController(t, env)
	bins := filepath.Dir(ctrl.Binaries().Kubeseal)
	ctx := context.Background()

	s := fjordtest.New(t)
	if err := s.Start("--kubeconfig", env.Kubeconfig()); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Fjord("repo", "create", "gitops-infra"); err != nil {
		t.Fatalf("repo create: %v\n%s", err, out)
	}
	work := filepath.Join(s.Dir, "work")
	if out, err := s.Git(ctx, "", "clone", "-q", s.URL("gitops-infra"), work); err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}

	// The README's commands: the certificate from the controller, then
	// the Secret sealed with it, straight into the work tree.
	const secret = "s3cr3t-Pa55w0rd"
	sh(t, work, bins, "kubeseal --fetch-cert --cert "+ctrl.CertURL()+" > ../sealed-secrets-cert.pem")
	if err := os.MkdirAll(filepath.Join(work, "apps", "payments"), 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, work, bins, `kubectl create secret generic db-credentials --namespace payments \
		--from-literal=username=payments --from-literal=password='`+secret+`' \
		--dry-run=client -o yaml |
	kubeseal --cert ../sealed-secrets-cert.pem -o yaml > apps/payments/db-credentials.sealedsecret.yaml`)
	sealed, err := os.ReadFile(filepath.Join(work, "apps", "payments", "db-credentials.sealedsecret.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sealed), "kind: SealedSecret") || !strings.Contains(string(sealed), "encryptedData:") {
		t.Fatalf("kubeseal wrote no SealedSecret:\n%s", sealed)
	}
	for _, plain := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
		if strings.Contains(string(sealed), plain) {
			t.Fatalf("the file committed to git holds the secret in the clear (%q):\n%s", plain, sealed)
		}
	}
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "-m", "payments: db credentials, sealed"}, {"push", "-q", "origin", "HEAD:main"}} {
		if out, err := s.Git(ctx, work, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	head, err := s.Git(ctx, work, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}

	// The app, with a retry policy, as the seed apps have one.
	_, port, _ := net.SplitHostPort(s.SSHAddr)
	app := `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: payments-secrets
  namespace: argocd
spec:
  project: default
  source:
    repoURL: ssh://git@127.0.0.1:` + port + `/gitops-infra.git
    targetRevision: HEAD
    path: apps/payments
  destination:
    server: https://kubernetes.default.svc
    namespace: payments
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
    - CreateNamespace=true
    retry:
      limit: -1
      backoff:
        duration: 1s
        factor: 2
        maxDuration: 4s
`
	appFile := filepath.Join(s.Dir, "app.yaml")
	if err := os.WriteFile(appFile, []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	// No CRD yet: the sync fails and says what to install.
	out, _ := s.Fjord("app", "apply", "-f", appFile)
	a := getApp(t, s, "payments-secrets")
	if a.Status.Sync != "Error" {
		t.Fatalf("app synced a SealedSecret with no CRD installed: %+v\n%s", a.Status, out)
	}
	for _, want := range []string{"SealedSecret", "API group bitnami.com", "not installed", "Sealed Secrets controller"} {
		if !strings.Contains(a.Status.Error, want) {
			t.Errorf("the error of a SealedSecret without its CRD does not say %q:\n%s", want, a.Status.Error)
		}
	}

	t.Logf("error without the CRD: %s", a.Status.Error)
	// The operator installs the controller's CRD; fjord's retry picks it
	// up with no push.
	sh(t, work, bins, "kubectl --kubeconfig "+env.Kubeconfig()+" apply -f "+ctrl.Binaries().CRD)
	deadline := time.Now().Add(waitFor)
	for a = getApp(t, s, "payments-secrets"); a.Status.Sync != "Synced" || a.Status.SyncedCommit != head; a = getApp(t, s, "payments-secrets") {
		if time.Now().After(deadline) {
			t.Fatalf("the app did not sync by itself after the CRD was installed: %+v", a.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The controller unseals it: a Secret with what the user typed,
	// owned by the SealedSecret fjord applied.
	var got struct {
		Data     map[string]string `json:"data"`
		Metadata struct {
			OwnerReferences []struct {
				Kind string `json:"kind"`
				Name string `json:"name"`
			} `json:"ownerReferences"`
		} `json:"metadata"`
	}
	deadline = time.Now().Add(waitFor)
	for {
		cmd := exec.Command("kubectl", "--kubeconfig", env.Kubeconfig(), "-n", "payments", "get", "secret", "db-credentials", "-o", "json")
		if b, err := cmd.Output(); err == nil {
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the controller made no Secret db-credentials from the SealedSecret; its log:\n%s", ctrl.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for k, want := range map[string]string{"username": "payments", "password": secret} {
		b, err := base64.StdEncoding.DecodeString(got.Data[k])
		if err != nil || string(b) != want {
			t.Errorf("Secret data %s = %q (%v), want %q", k, b, err, want)
		}
	}
	if len(got.Metadata.OwnerReferences) != 1 || got.Metadata.OwnerReferences[0].Kind != "SealedSecret" || got.Metadata.OwnerReferences[0].Name != "db-credentials" {
		t.Errorf("the Secret is not the SealedSecret's: owners %+v", got.Metadata.OwnerReferences)
	}
	if strings.Contains(s.Log(), secret) {
		t.Error("fjord's log holds the secret in the clear")
	}
}
