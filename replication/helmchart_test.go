package replication_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// TestKeptChartsReplicate keeps chart archives on the primary (one of
// several MiB): a follower holds them, byte for byte and 0600, once it
// acked the change, and so does a new member that starts from a full
// copy; deleting the Helm repository removes them on both.
func TestKeptChartsReplicate(t *testing.T) {
	g := newGroup(t)
	// A short log, so the member started later needs a full copy.
	p := g.start(t, "p", t.TempDir(), "", "", &storage.Options{ChangeLogSize: 2})
	f := g.start(t, "f", t.TempDir(), "", p.addr, nil)
	if err := p.store.CreateHelmRepo(storage.HelmRepo{Name: "charts", URL: "https://charts.example.com"}); err != nil {
		t.Fatal(err)
	}
	keep := func(v string, size int) (string, []byte) {
		data := make([]byte, size)
		rand.Read(data)
		file := "web-" + v + ".tgz"
		c := storage.HelmChart{Repo: "charts", Name: "web", Version: v, Size: int64(size), Fetched: time.Now().UTC()}
		if err := p.store.KeepHelmChart(c, file, data); err != nil {
			t.Fatal(err)
		}
		return file, data
	}
	holds := func(n *node, file string, want []byte) {
		t.Helper()
		path := n.store.HelmChartPath("charts", file)
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: chart %s: %d bytes, %v; want the primary's %d bytes", n.id, file, len(got), err, len(want))
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: chart %s has mode %v", n.id, file, fi.Mode())
		}
	}
	f1, d1 := keep("1.0.0", 8<<10)
	f2, d2 := keep("2.0.0", 4<<20)
	p.waitAcked(t, 1)
	holds(f, f1, d1)
	holds(f, f2, d2)

	for range 3 { // past the log of 2
		if _, err := p.store.UpdateHelmRepo("charts", func(*storage.HelmRepo) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	n := g.start(t, "n", t.TempDir(), "", p.addr, nil)
	p.waitAcked(t, 2)
	if st := p.status(t, "n"); st.FullCopies != 1 {
		t.Fatalf("new member: %+v, want one full copy", st)
	}
	holds(n, f1, d1)
	holds(n, f2, d2)

	if err := p.store.DeleteHelmRepo("charts"); err != nil {
		t.Fatal(err)
	}
	p.waitAcked(t, 2)
	for _, r := range []*node{f, n} {
		if _, err := os.Stat(r.store.HelmDir("charts")); !os.IsNotExist(err) {
			t.Fatalf("%s: the deleted repository's charts are still there: %v", r.id, err)
		}
	}
}

// BenchmarkKeptChartAcked times a chart archive of 4 MiB from kept on the
// primary to acked by its follower: the change, the archive sent beside
// it and written durably (fsync, rename, directory fsync) on the follower.
func BenchmarkKeptChartAcked(b *testing.B) {
	g := newGroup(b)
	p := g.start(b, "p", b.TempDir(), "", "", nil)
	g.start(b, "f", b.TempDir(), "", p.addr, nil)
	if err := p.store.CreateHelmRepo(storage.HelmRepo{Name: "charts", URL: "https://charts.example.com"}); err != nil {
		b.Fatal(err)
	}
	p.waitAcked(b, 1)
	data := make([]byte, 4<<20)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := range b.N {
		v := fmt.Sprintf("1.0.%d", i)
		c := storage.HelmChart{Repo: "charts", Name: "web", Version: v, Size: int64(len(data)), Fetched: time.Now().UTC()}
		if err := p.store.KeepHelmChart(c, "web-"+v+".tgz", data); err != nil {
			b.Fatal(err)
		}
		p.waitAcked(b, 1)
	}
}
