package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The versions of the binaries testenv runs. They key the build cache and
// must match the tools modules (tools/*/go.mod) and tools/build.sh; a test
// checks that they do.
const (
	// KubernetesVersion is the k8s.io/kubernetes release kube-apiserver is built from.
	KubernetesVersion = "v1.34.4"
	// EtcdVersion is the go.etcd.io/etcd/server/v3 release etcd is built from.
	EtcdVersion = "v3.6.4"
)

// Environment variables that steer where the binaries are found.
const (
	// EnvKubeAPIServer names a kube-apiserver binary to use instead of the cached one.
	EnvKubeAPIServer = "FJORD_KUBE_APISERVER"
	// EnvEtcd names an etcd binary to use instead of the cached one.
	EnvEtcd = "FJORD_ETCD"
	// EnvCache names the build cache directory; tools/build.sh reads it too.
	EnvCache = "FJORD_TESTENV_CACHE"
	// EnvSkip, set to 1, makes Shared skip every test that needs the API
	// server, where it would otherwise fail when the binaries are missing:
	// for developers who have not built them. CI never sets it.
	EnvSkip = "FJORD_SKIP_KUBE"
)

// ErrBinariesMissing is returned (wrapped, naming the path looked at) when
// kube-apiserver or etcd has not been built.
var ErrBinariesMissing = errors.New("testenv: kube-apiserver or etcd is not built; run `make testenv` (or set " +
	EnvKubeAPIServer + " and " + EnvEtcd + ")")

// Binaries are the paths of the two programs an Env runs.
type Binaries struct {
	// KubeAPIServer is the path of the kube-apiserver binary.
	KubeAPIServer string
	// Etcd is the path of the etcd binary.
	Etcd string
}

// CacheDir returns the directory `make testenv` builds into:
// $FJORD_TESTENV_CACHE, or else $HOME/.cache/fjord/testenv. It is spelled
// out rather than taken from os.UserCacheDir so that it is the same
// directory tools/build.sh computes from the same variables.
func CacheDir() (string, error) {
	if dir := os.Getenv(EnvCache); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("testenv: find build cache: %w", err)
	}
	return filepath.Join(home, ".cache", "fjord", "testenv"), nil
}

// FindBinaries returns the binaries to run: those named by
// $FJORD_KUBE_APISERVER and $FJORD_ETCD where set, else the ones `make
// testenv` put in CacheDir. An error wraps ErrBinariesMissing and names the
// path that is missing.
func FindBinaries() (Binaries, error) {
	cache, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	apiserver, err := findBinary(EnvKubeAPIServer, filepath.Join(cache, "k8s-"+KubernetesVersion, "kube-apiserver"))
	if err != nil {
		return Binaries{}, err
	}
	etcd, err := findBinary(EnvEtcd, filepath.Join(cache, "etcd-"+EtcdVersion, "etcd"))
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{KubeAPIServer: apiserver, Etcd: etcd}, nil
}

// findBinary returns $env if set, else cached, after checking that the file
// is an executable regular file.
func findBinary(env, cached string) (string, error) {
	path, from := cached, "build cache"
	if p := os.Getenv(env); p != "" {
		path, from = p, "$"+env
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s from %s: %w", ErrBinariesMissing, path, from, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s from %s is not an executable file", ErrBinariesMissing, path, from)
	}
	return path, nil
}
