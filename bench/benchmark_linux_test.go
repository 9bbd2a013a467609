package bench

import (
	"testing"
	"time"
)

// BenchmarkHistogramRecord is the cost fjord adds to every measured
// operation: a few nanoseconds against the tens of microseconds of the
// fastest flush.
func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	for i := range b.N {
		h.Record(time.Duration(i%1_000_000 + 1))
	}
}

// BenchmarkWALAppend appends etcd WAL records to a file in the test's temp
// directory and reports the fdatasync percentiles, the figures the etcd-wal
// verdict judges, for the disk under $TMPDIR.
func BenchmarkWALAppend(b *testing.B) {
	s, err := newScratch(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.cleanup()
	l, err := newAppendLog(s, "wal", defaultSegmentSize, walRecordSize, false)
	if err != nil {
		b.Fatal(err)
	}
	defer l.discard()
	h := NewHistogram()
	b.SetBytes(walRecordSize)
	for b.Loop() {
		_, sync, err := l.append()
		if err != nil {
			b.Fatal(err)
		}
		h.Record(sync)
	}
	b.ReportMetric(float64(h.Percentile(50)), "p50-ns")
	b.ReportMetric(float64(h.Percentile(99)), "p99-ns")
}
