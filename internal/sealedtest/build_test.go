package sealedtest_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/fjordhq/fjord/internal/sealedtest"
)

// TestVersionsAgree checks that the version the cache is keyed by, the one
// tools/build.sh builds and the one tools/go.mod pins are the same: a bump
// of one alone would build one release and run another, or rebuild
// nothing.
func TestVersionsAgree(t *testing.T) {
	script, err := os.ReadFile("tools/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("tools/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^SEALED_SECRETS_VERSION=(\S+)$`).FindSubmatch(script)
	if m == nil || string(m[1]) != sealedtest.Version {
		t.Errorf("tools/build.sh builds %q, sealedtest.Version is %q", m, sealedtest.Version)
	}
	m = regexp.MustCompile(`(?m)^\s*github\.com/bitnami-labs/sealed-secrets (\S+)`).FindSubmatch(mod)
	if m == nil || string(m[1]) != sealedtest.Version {
		t.Errorf("tools/go.mod pins %q, sealedtest.Version is %q", m, sealedtest.Version)
	}
	for _, tool := range []string{"cmd/controller", "cmd/kubeseal"} {
		if !regexp.MustCompile(`(?m)^\s*github\.com/bitnami-labs/sealed-secrets/` + tool + `$`).Match(mod) {
			t.Errorf("tools/go.mod has no tool line for %s", tool)
		}
	}
}
