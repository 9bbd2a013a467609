package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// chartBytes returns an archive stand-in of n bytes (storage does not
// read charts) that holds marker, so a test can look for its bytes.
func chartBytes(t *testing.T, marker string, n int) []byte {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	copy(data[n/2:], marker)
	return data
}

// keepChart keeps data as version v of chart web in repository repo.
func keepChart(t *testing.T, s *storage.Store, repo, v string, data []byte) string {
	t.Helper()
	file := "web-" + v + ".tgz"
	c := storage.HelmChart{Repo: repo, Name: "web", Version: v, Digest: "d" + v, Size: int64(len(data)), Fetched: time.Now().UTC()}
	if err := s.KeepHelmChart(c, file, data); err != nil {
		t.Fatalf("KeepHelmChart(%s %s): %v", repo, v, err)
	}
	return file
}

// sameChart fails unless b keeps file of repo exactly as a does, 0600 in
// a 0700 directory.
func sameChart(t *testing.T, a, b *storage.Store, repo, file string) {
	t.Helper()
	want, err := os.ReadFile(a.HelmChartPath(repo, file))
	if err != nil {
		t.Fatal(err)
	}
	path := b.HelmChartPath(repo, file)
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("chart %s/%s on the replica: %d bytes, %v; want the primary's %d bytes", repo, file, len(got), err, len(want))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("chart %s/%s has mode %v, want 0600", repo, file, fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("charts directory of %s has mode %v, want 0700", repo, fi.Mode())
	}
}

// TestKeptChartsReplicate keeps chart archives on a primary (one of
// several MiB): a follower gets them through ApplyChange and a new member
// through ApplySnapshot, byte for byte, while the change log records only
// that they were written; deleting the Helm repository removes them on
// the follower too.
func TestKeptChartsReplicate(t *testing.T) {
	ctx := context.Background()
	pdir := t.TempDir()
	p := open(t, pdir)
	f := open(t, t.TempDir())
	for _, name := range []string{"charts", "other"} {
		if err := p.CreateHelmRepo(storage.HelmRepo{Name: name, URL: "https://" + name + ".example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	small := chartBytes(t, "kept-chart-marker-4711", 4<<10)
	big := chartBytes(t, "kept-chart-marker-4712", 5<<20)
	f1 := keepChart(t, p, "charts", "1.0.0", small)
	f2 := keepChart(t, p, "charts", "2.0.0", big)
	f3 := keepChart(t, p, "other", "1.0.0", small)
	// The last index read stays on the primary: it does not replicate.
	if err := os.WriteFile(filepath.Join(p.HelmDir("charts"), "index.yaml"), []byte("apiVersion: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	replicate(t, p, f)
	sameState(t, p, f)
	sameChart(t, p, f, "charts", f1)
	sameChart(t, p, f, "charts", f2)
	sameChart(t, p, f, "other", f3)
	if _, err := f.HelmChart("charts", "web", "2.0.0"); err != nil {
		t.Fatalf("the chart's record did not replicate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.HelmDir("charts"), "index.yaml")); !os.IsNotExist(err) {
		t.Fatalf("the index replicated: %v", err)
	}

	// The change log (in fjord.db) holds no archive's bytes.
	raw, err := os.ReadFile(filepath.Join(pdir, "fjord.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{small, big} {
		piece := data[len(data)/2 : len(data)/2+48]
		if bytes.Contains(raw, piece) || strings.Contains(string(raw), base64.StdEncoding.EncodeToString(piece)[:32]) {
			t.Fatal("fjord.db holds the bytes of a chart archive")
		}
	}

	// A new member, with leftovers of its own, gets a full copy: the
	// charts of the primary, nothing else but its own index.
	n := open(t, t.TempDir())
	stray := filepath.Join(n.HelmDir("gone"), "charts", "x-1.0.0.tgz")
	strayChart := n.HelmChartPath("charts", "web-0.9.0.tgz")
	nIndex := filepath.Join(n.HelmDir("charts"), "index.yaml")
	for _, path := range []string{stray, strayChart, nIndex} {
		os.MkdirAll(filepath.Dir(path), 0o700)
		if err := os.WriteFile(path, []byte("left over"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// One archive there already, but not what the primary keeps.
	os.WriteFile(n.HelmChartPath("charts", f1), []byte("damaged"), 0o600)
	snap, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ApplySnapshot(ctx, snap, fetchFrom(t, p)); err != nil {
		t.Fatal(err)
	}
	sameState(t, p, n)
	sameChart(t, p, n, "charts", f1)
	sameChart(t, p, n, "charts", f2)
	sameChart(t, p, n, "other", f3)
	for _, path := range []string{stray, strayChart} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s survived the full copy: %v", path, err)
		}
	}
	if _, err := os.Stat(nIndex); err != nil {
		t.Fatalf("the full copy removed the member's own index: %v", err)
	}

	// Deleting a Helm repository removes its charts on followers.
	if err := p.DeleteHelmRepo("charts"); err != nil {
		t.Fatal(err)
	}
	replicate(t, p, f)
	replicate(t, p, n)
	sameState(t, p, f)
	sameState(t, p, n)
	for _, s := range []*storage.Store{f, n} {
		if _, err := os.Stat(s.HelmDir("charts")); !os.IsNotExist(err) {
			t.Fatalf("the deleted repository's charts are still on a replica: %v", err)
		}
		sameChart(t, p, s, "other", f3)
	}
}

// TestKeepHelmChartRefusesBadNames keeps archives only under their
// repository's charts directory, and only for a repository that exists.
func TestKeepHelmChartRefusesBadNames(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.CreateHelmRepo(storage.HelmRepo{Name: "charts", URL: "https://charts.example.com"}); err != nil {
		t.Fatal(err)
	}
	c := storage.HelmChart{Repo: "charts", Name: "web", Version: "1.0.0"}
	for _, bad := range []string{"", ".", "..", "../x.tgz", "a/b.tgz", ".web-1.0.0.tgz"} {
		if err := s.KeepHelmChart(c, bad, []byte("x")); err == nil {
			t.Errorf("KeepHelmChart(%q) kept it", bad)
		}
	}
	c.Repo = "nope"
	if err := s.KeepHelmChart(c, "web-1.0.0.tgz", []byte("x")); err == nil {
		t.Error("KeepHelmChart for a repository that does not exist kept it")
	}
	if pos := s.Position(); pos != 1 {
		t.Errorf("position %d after refused keeps, want 1 (the repository)", pos)
	}
}

// TestBackupHoldsKeptCharts backs up a store with kept charts and an
// index and restores it: both come back, and the restored store knows the
// charts as kept.
func TestBackupHoldsKeptCharts(t *testing.T) {
	ctx := context.Background()
	p := open(t, t.TempDir())
	if err := p.CreateHelmRepo(storage.HelmRepo{Name: "charts", URL: "https://charts.example.com"}); err != nil {
		t.Fatal(err)
	}
	data := chartBytes(t, "backup-chart", 64<<10)
	file := keepChart(t, p, "charts", "1.2.3", data)
	index := []byte("apiVersion: v1\nentries: {}\n")
	if err := os.WriteFile(filepath.Join(p.HelmDir("charts"), "index.yaml"), index, 0o600); err != nil {
		t.Fatal(err)
	}
	bak := filepath.Join(t.TempDir(), "b")
	m, err := p.Backup(ctx, bak, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.HelmFiles != 2 {
		t.Fatalf("backup manifest counts %d helm files, want 2", m.HelmFiles)
	}
	to := filepath.Join(t.TempDir(), "restored")
	if _, err := storage.Restore(ctx, bak, to, nil); err != nil {
		t.Fatal(err)
	}
	r := open(t, to)
	if _, err := r.HelmChart("charts", "web", "1.2.3"); err != nil {
		t.Fatalf("restored store lacks the chart's record: %v", err)
	}
	sameChart(t, p, r, "charts", file)
	if got, err := os.ReadFile(filepath.Join(r.HelmDir("charts"), "index.yaml")); err != nil || !bytes.Equal(got, index) {
		t.Fatalf("restored index: %q, %v", got, err)
	}
}
