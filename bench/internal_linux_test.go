package bench

// White-box tests of WAL segment handling and the scratch directory's
// bookkeeping, which do not show through RunDisk's result.

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestAppendLogCutsAndRemovesSegments(t *testing.T) {
	for _, shared := range []bool{false, true} {
		appendLogCutsAndRemovesSegments(t, shared)
	}
}

func appendLogCutsAndRemovesSegments(t *testing.T, shared bool) {
	parent := t.TempDir()
	s, err := newScratch(parent)
	if err != nil {
		t.Fatal(err)
	}
	const rec, perSegment = 100, 10
	l, err := newAppendLog(s, "wal", rec*perSegment, rec, shared)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 35 {
		w, sync, err := l.append()
		if err != nil {
			t.Fatal(err)
		}
		if w <= 0 || sync <= 0 {
			t.Fatalf("append %d timed write %v, fdatasync %v", i, w, sync)
		}
		// At most the segment being written exists, preallocated to
		// its full size.
		entries, _ := os.ReadDir(s.dir)
		if len(entries) != 1 {
			t.Fatalf("after append %d: %d segments on disk", i, len(entries))
		}
		fi, _ := entries[0].Info()
		if want := "wal-" + strings.Repeat("0", 3) + string(rune('0'+i/perSegment)) + ".wal"; entries[0].Name() != want || fi.Size() != rec*perSegment {
			t.Fatalf("after append %d: %s of %d bytes, want %s preallocated to %d", i, entries[0].Name(), fi.Size(), want, rec*perSegment)
		}
	}
	if l.seq != 4 {
		t.Errorf("%d segments cut for 35 records of 10 per segment, want 4", l.seq)
	}
	if err := l.discard(); err != nil {
		t.Fatal(err)
	}
	if err := s.cleanup(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestAppendLogFlushesWhatItWrote checks the raw fdatasync path end to end:
// the records are in the file, in order, and nothing in an append allocates,
// so no garbage collection can land inside a timed flush.
func TestAppendLogFlushesWhatItWrote(t *testing.T) {
	s, err := newScratch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.cleanup()
	const rec = 2300
	l, err := newAppendLog(s, "wal", 1<<20, rec, false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.discard()
	if allocs := testing.AllocsPerRun(50, func() {
		if _, _, err := l.append(); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("an append allocates %v times", allocs)
	}
	got, err := os.ReadFile(l.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	n := int(l.off / rec)
	if n < 50 || !bytes.Equal(got[:n*rec], bytes.Repeat(l.rec, n)) {
		t.Errorf("%d records written, file does not hold them in order", n)
	}

	if _, err := timedFdatasync(-1); !errors.Is(err, unix.EBADF) {
		t.Errorf("timedFdatasync on a closed descriptor: %v, want EBADF", err)
	}
}

func TestScratchCleanupNeverRemovesForeignFiles(t *testing.T) {
	s, err := newScratch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.create("ours", os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	sub := s.path("objects")
	if err := s.mkdir(sub); err != nil {
		t.Fatal(err)
	}
	// Someone drops a file into the scratch directory during the run.
	foreign := filepath.Join(sub, "theirs")
	if err := os.WriteFile(foreign, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = s.cleanup()
	if err == nil || !strings.Contains(err.Error(), "remove it by hand") {
		t.Errorf("cleanup = %v, want an error telling the operator what is left", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("the foreign file is gone: %v", err)
	}
	if _, err := os.Stat(s.path("ours")); !os.IsNotExist(err) {
		t.Errorf("our file survived: %v", err)
	}
	// Once the foreign file is gone, a second cleanup finishes the job.
	os.Remove(foreign)
	if err := s.cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("scratch directory survived: %v", err)
	}
}
