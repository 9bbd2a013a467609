// Package sealedtest runs the real Sealed Secrets controller
// (github.com/bitnami-labs/sealed-secrets) against a test kube-apiserver of
// internal/testenv, for tests of the workflow fjord's users follow to keep
// secrets in git: kubeseal encrypts a Secret into a SealedSecret with the
// controller's certificate, the SealedSecret is pushed and applied, and the
// controller decrypts it into a Secret.
//
// The controller and kubeseal are built from the Go module proxy by `make
// sealed-secrets` (tools/build.sh, a tools module of its own, so their
// dependencies never enter fjord's go.mod) into the testenv cache, beside
// the SealedSecret CRD copied from the same module; FindBinaries locates
// the three files.
//
// The controller reads only the in-cluster configuration
// (rest.InClusterConfig): a service-account token, ca.crt and namespace
// under /var/run/secrets/kubernetes.io/serviceaccount, and
// KUBERNETES_SERVICE_HOST and _PORT. Start gives it those as a pod would
// have them, without touching the host: it runs the controller in a mount
// namespace of its own (unshare -m, which needs root) where a directory of
// the test is bound at that path, with a token of a ServiceAccount bound
// to the controller's ClusterRole.
package sealedtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fjordhq/fjord/internal/testenv"
)

// Version is the bitnami-labs/sealed-secrets release the tools are built
// from. It keys the build cache and must match tools/go.mod and
// tools/build.sh; a test checks that the three agree. It is the last
// release under this module path: later ones moved to
// github.com/bitnami/sealed-secrets, which the module proxy does not serve.
const Version = "v0.27.1"

// ErrBinariesMissing is returned (wrapped, naming the path looked at) when
// `make sealed-secrets` has not been run.
var ErrBinariesMissing = errors.New("sealedtest: the Sealed Secrets controller, kubeseal or their CRD is not built; run `make sealed-secrets`")

// Binaries are the files of one Sealed Secrets release.
type Binaries struct {
	// Controller is the path of the controller binary.
	Controller string
	// Kubeseal is the path of the kubeseal binary.
	Kubeseal string
	// CRD is the path of the SealedSecret CustomResourceDefinition
	// (helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml).
	CRD string
}

// CacheDir is the directory `make sealed-secrets` builds Version into,
// under testenv's cache directory.
func CacheDir() (string, error) {
	dir, err := testenv.CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "sealed-secrets-"+Version), nil
}

// FindBinaries returns the files `make sealed-secrets` put in CacheDir. An
// error wraps ErrBinariesMissing and names the file that is missing.
func FindBinaries() (Binaries, error) {
	dir, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{
		Controller: filepath.Join(dir, "controller"),
		Kubeseal:   filepath.Join(dir, "kubeseal"),
		CRD:        filepath.Join(dir, "bitnami.com_sealedsecrets.yaml"),
	}
	for _, p := range []string{b.Controller, b.Kubeseal} {
		fi, err := os.Stat(p)
		if err != nil {
			return Binaries{}, fmt.Errorf("%w: %w", ErrBinariesMissing, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return Binaries{}, fmt.Errorf("%w: %s is not an executable file", ErrBinariesMissing, p)
		}
	}
	if fi, err := os.Stat(b.CRD); err != nil || fi.Size() == 0 {
		return Binaries{}, fmt.Errorf("%w: %s is missing or empty (%v)", ErrBinariesMissing, b.CRD, err)
	}
	return b, nil
}
