package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// shared is the Env of this test binary, started by the first Shared call
// and stopped by Main.
var shared struct {
	mu      sync.Mutex
	inMain  bool // Main is running the tests, so someone will stop env
	started bool // a start was tried; env or err holds the result
	env     *Env
	err     error
}

// Main runs the tests of a package that uses Shared and then stops the
// shared Env, if one was started, before exiting with the tests' status.
// Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// The Env is started lazily by the first Shared call, so running only the
// tests of the package that need no API server costs nothing.
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()

	code := m.Run()

	shared.mu.Lock()
	env := shared.env
	shared.mu.Unlock()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop shared environment: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Shared returns the test binary's Env, starting it on first use. The
// tests that share it should keep out of each other's way, typically by
// working in their own namespace (see Env.Namespace).
//
// When the binaries are missing the test fails with a message naming `make
// testenv`, because a test that silently skips proves nothing in CI; a
// developer who has not built them can set FJORD_SKIP_KUBE=1 to skip
// instead. A failed start fails every test that asks, with the same error.
// Shared must be used under Main, which stops the Env when the tests end.
func Shared(t testing.TB) *Env {
	t.Helper()
	if os.Getenv(EnvSkip) == "1" {
		t.Skipf("testenv: %s=1: skipping a test that needs kube-apiserver", EnvSkip)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("testenv: Shared needs the package's TestMain to call testenv.Main(m), which stops the environment")
	}
	if !shared.started {
		shared.started = true
		shared.env, shared.err = Start(context.Background(), Options{})
	}
	if shared.err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", shared.err)
	}
	return shared.env
}

// nsUnsafe matches what a namespace name may not contain.
var nsUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace named after the test, with a random
// suffix so that reruns with -count never collide, and returns its name.
//
// The namespace is not deleted after the test: without a
// kube-controller-manager a deleted namespace stays Terminating with its
// objects in it, so deleting buys nothing. Stop discards everything.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	var suffix [3]byte
	_, _ = rand.Read(suffix[:]) // crypto/rand.Read never fails
	base := strings.Trim(nsUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	// A namespace name is a DNS label: at most 63 characters.
	const maxBase = 63 - 1 - 2*len(suffix)
	if len(base) > maxBase {
		base = strings.TrimRight(base[:maxBase], "-")
	}
	if base == "" {
		base = "test"
	}
	name := base + "-" + hex.EncodeToString(suffix[:])
	if err := e.CreateNamespace(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	return name
}

// CreateNamespace creates the namespace name.
func (e *Env) CreateNamespace(ctx context.Context, name string) error {
	body, err := json.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata":   map[string]string{"name": name},
	})
	if err != nil {
		return fmt.Errorf("testenv: create namespace %q: %w", name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/api/v1/namespaces", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("testenv: create namespace %q: %w", name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("testenv: create namespace %q: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("testenv: create namespace %q: %s: %s", name, resp.Status, msg)
	}
	return nil
}
