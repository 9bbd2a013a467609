package deploytest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unitFile is deploy/systemd/fjord.service, as section -> key -> values.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T) (unitFile, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir(t), "systemd", "fjord.service"))
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("deploy/systemd/fjord.service: cannot parse %q", line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u, b
}

func (u unitFile) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// TestSystemdUnit checks the hardening the unit promises and that the
// data dir systemd creates is the one fjord serves.
func TestSystemdUnit(t *testing.T) {
	u, _ := parseUnit(t)
	for _, want := range []struct{ key, value string }{
		{"User", "fjord"},
		{"Group", "fjord"},
		{"StateDirectory", "fjord"},
		{"ProtectSystem", "strict"},
		{"NoNewPrivileges", "yes"},
		{"PrivateTmp", "yes"},
		{"ProtectHome", "yes"},
		{"Restart", "on-failure"},
		{"CapabilityBoundingSet", ""},
	} {
		if got, ok := u["Service"][want.key]; !ok || u.last("Service", want.key) != want.value {
			t.Errorf("[Service] %s = %q, want %q", want.key, got, want.value)
		}
	}
	exec := strings.Fields(u.last("Service", "ExecStart"))
	if len(exec) < 2 || exec[0] != "/usr/local/bin/fjord" || exec[1] != "serve" {
		t.Fatalf("ExecStart = %v, want /usr/local/bin/fjord serve ...", exec)
	}
	args := strings.Join(exec, " ")
	// StateDirectory=fjord is /var/lib/fjord: the only writable path under
	// ProtectSystem=strict, so it must be the data dir.
	if !strings.Contains(args, "--data "+dataDir) {
		t.Errorf("ExecStart %q does not serve --data %s, the StateDirectory", args, dataDir)
	}
	for _, flag := range []string{"--ssh-addr ", "--http-addr "} {
		if !strings.Contains(args, flag) {
			t.Errorf("ExecStart %q lacks %s", args, flag)
		}
	}
	if ts := u.last("Service", "TimeoutStopSec"); ts == "" {
		t.Error("no TimeoutStopSec: systemd's default (90s) is fine, but state it next to --shutdown-timeout")
	} else if d, err := time.ParseDuration(ts); err != nil || d <= 30*time.Second {
		t.Errorf("TimeoutStopSec = %s, want longer than fjord's --shutdown-timeout (30s)", ts)
	}
	if u.last("Install", "WantedBy") != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q, want multi-user.target", u.last("Install", "WantedBy"))
	}
}

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` on the unit where
// systemd is installed (`make deploy-check` installs it and sets
// FJORD_REQUIRE_SYSTEMD=1, which turns the skip into a failure). Its
// ExecStart is pointed at an executable that exists, since verify checks
// that, and any message it prints fails the test: unknown keys are only
// warnings to systemd.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("FJORD_REQUIRE_SYSTEMD") == "1" {
			t.Fatalf("FJORD_REQUIRE_SYSTEMD=1 but: %v", err)
		}
		t.Skipf("systemd-analyze is not installed (`make deploy-check` installs it): %v", err)
	}
	_, b := parseUnit(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := bytes.Replace(b, []byte("ExecStart=/usr/local/bin/fjord "), []byte("ExecStart="+self+" "), 1)
	if bytes.Equal(unit, b) {
		t.Fatal("ExecStart does not start with /usr/local/bin/fjord")
	}
	path := filepath.Join(t.TempDir(), "fjord.service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sa, "verify", path)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify deploy/systemd/fjord.service: %v\n%s", err, out)
	}
}
