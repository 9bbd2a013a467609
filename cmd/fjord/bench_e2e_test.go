package main_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchCommands runs `fjord bench disk` and `fjord bench git --self`
// as the README shows them, with tiny durations, and checks their JSON.
// The workloads themselves are tested in package bench.
func TestBenchCommands(t *testing.T) {
	dir := t.TempDir()
	etcd := filepath.Join(dir, "etcd") // not there yet, as before etcd is installed
	out, err := exec.Command(fjordBin, "bench", "disk", "--dir", etcd).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pass --mkdir") || !strings.Contains(string(out), "nearest existing parent is "+dir) {
		t.Fatalf("bench disk on a missing --dir: %v\n%s", err, out)
	}
	out, err = exec.Command(fjordBin, "bench", "disk", "--dir", etcd, "--mkdir", "--duration", "200ms", "--file-size", "8MiB",
		"--workload", "etcd-wal,bbolt-commit,git-loose-objects", "--json").Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) { // 3: a check failed on this disk, still a report
		t.Fatalf("bench disk: %v\n%s", err, out)
	}
	var disk struct {
		Schema    string `json:"schema"`
		Workloads []struct {
			Name string `json:"name"`
		} `json:"workloads"`
	}
	if err := json.Unmarshal(out, &disk); err != nil {
		t.Fatalf("bench disk --json: %v\n%s", err, out)
	}
	if disk.Schema != "fjord.bench.disk/v1" || len(disk.Workloads) != 3 {
		t.Fatalf("bench disk report: %+v", disk)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("bench disk left files behind: %v", ents)
	}

	out, err = exec.Command(fjordBin, "--data", filepath.Join(t.TempDir(), "data"), "bench", "git", "--self", "--duration", "300ms", "--json").Output()
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) {
		t.Fatalf("bench git --self: %v\n%s", err, out)
	}
	var git struct {
		Schema string `json:"schema"`
		Repo   struct {
			Commits, Objects, Bytes int64
		} `json:"repo"`
		Verdicts []struct{ Check string } `json:"verdicts"`
	}
	if err := json.Unmarshal(out, &git); err != nil || git.Schema != "fjord.bench.git/v1" {
		t.Fatalf("bench git --self --json: %v\n%s", err, out)
	}
	if git.Repo.Commits != 100 || git.Repo.Objects == 0 || git.Repo.Bytes == 0 || len(git.Verdicts) != 4 {
		t.Fatalf("bench git --self --json: repository %+v, %d verdicts", git.Repo, len(git.Verdicts))
	}

	// The text report states the generated repository and what every
	// figure includes; --html writes the same report as a page.
	html := filepath.Join(t.TempDir(), "git.html")
	out, err = exec.Command(fjordBin, "--data", filepath.Join(t.TempDir(), "data"), "bench", "git", "--self", "--duration", "300ms",
		"--workload", "ls-remote", "--html", html).Output()
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) {
		t.Fatalf("bench git --self --html: %v\n%s", err, out)
	}
	for _, want := range []string{"100 commits, 1 refs", "includes starting the git and ssh", "not comparable",
		"VERDICT", "--self generated the repository", "200 files of 4.00 KiB", "HTML report: " + html} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bench git --self lacks %q:\n%s", want, out)
		}
	}
	if page, err := os.ReadFile(html); err != nil || !strings.Contains(string(page), "<svg ") {
		t.Errorf("HTML report: %v", err)
	}
}
