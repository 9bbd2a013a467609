package bench_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fjordhq/fjord/bench"
)

// exactPercentile is the nearest-rank percentile of sorted samples, with the
// rank rounded half up as HdrHistogram rounds it.
func exactPercentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(p/100*float64(len(sorted)) + 0.5)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// within reports whether got is within rel of want.
func within(got, want time.Duration, rel float64) bool {
	return math.Abs(float64(got-want)) <= rel*float64(want)
}

func TestHistogramPercentilesMatchKnownDistributions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	dists := map[string]func() time.Duration{
		// Uniform over 1 µs to 100 ms.
		"uniform": func() time.Duration { return time.Microsecond + time.Duration(rng.Int64N(int64(100*time.Millisecond))) },
		// Exponential with a 500 µs mean: a flush that is usually fast.
		"exponential": func() time.Duration { return time.Duration(rng.ExpFloat64()*500e3) + 1 },
		// Log-normal around 200 µs with a heavy tail, like fdatasync on a
		// busy SSD.
		"lognormal": func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()*1.2+math.Log(200e3))) + 1 },
		// Bimodal: 95% fast cache hits, 5% slow flushes.
		"bimodal": func() time.Duration {
			if rng.IntN(100) < 95 {
				return 80*time.Microsecond + time.Duration(rng.Int64N(20e3))
			}
			return 8*time.Millisecond + time.Duration(rng.Int64N(4e6))
		},
	}
	for name, draw := range dists {
		t.Run(name, func(t *testing.T) {
			h := bench.NewHistogram()
			samples := make([]time.Duration, 100_000)
			for i := range samples {
				samples[i] = draw()
				h.Record(samples[i])
			}
			slices.Sort(samples)
			s := h.Summary()
			if s.Samples != int64(len(samples)) {
				t.Fatalf("Samples = %d, want %d", s.Samples, len(samples))
			}
			// Three significant digits: every figure within 0.1% of
			// the exact sample at the same rank.
			for _, c := range []struct {
				name string
				got  time.Duration
				p    float64
			}{{"p50", s.P50, 50}, {"p90", s.P90, 90}, {"p99", s.P99, 99}, {"p99.9", s.P999, 99.9}, {"max", s.Max, 100}} {
				want := exactPercentile(samples, c.p)
				if !within(c.got, want, 0.001) {
					t.Errorf("%s = %v, exact %v: off by more than 0.1%%", c.name, c.got, want)
				}
			}
			if !within(s.Min, samples[0], 0.001) {
				t.Errorf("min = %v, exact %v", s.Min, samples[0])
			}
			var sum float64
			for _, v := range samples {
				sum += float64(v)
			}
			if mean := time.Duration(sum / float64(len(samples))); !within(s.Mean, mean, 0.001) {
				t.Errorf("mean = %v, exact %v", s.Mean, mean)
			}
		})
	}
}

func TestHistogramBinsHoldEverySampleInTheRightBin(t *testing.T) {
	h := bench.NewHistogram()
	// 900 samples at 100 µs, 90 at 3 ms, 10 at 40 ms.
	for range 900 {
		h.Record(100 * time.Microsecond)
	}
	for range 90 {
		h.Record(3 * time.Millisecond)
	}
	for range 10 {
		h.Record(40 * time.Millisecond)
	}
	s := h.Summary()
	var total int64
	counts := map[time.Duration]int64{}
	for i, b := range s.Bins {
		total += b.Count
		if i > 0 && b.Upper <= s.Bins[i-1].Upper {
			t.Fatalf("bin %d upper %v not above bin %d's %v", i, b.Upper, i-1, s.Bins[i-1].Upper)
		}
		if b.Count > 0 {
			counts[b.Upper] = b.Count
		}
	}
	if total != 1000 {
		t.Errorf("bins hold %d samples, want 1000", total)
	}
	// Bins end on the R10 series: (80 µs, 100 µs], (2.5 ms, 3.15 ms],
	// (31.5 ms, 40 ms].
	want := map[time.Duration]int64{100 * time.Microsecond: 900, 3150 * time.Microsecond: 90, 40 * time.Millisecond: 10}
	for upper, n := range want {
		if counts[upper] != n {
			t.Errorf("bin up to %v holds %d, want %d (bins: %v)", upper, counts[upper], n, s.Bins)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("non-empty bins %v, want exactly %v", counts, want)
	}
	// The first bin holds the minimum and the last the maximum, with the
	// empty bins between kept.
	if first := s.Bins[0]; first.Upper != 100*time.Microsecond {
		t.Errorf("first bin ends at %v, want 100µs", first.Upper)
	}
	if last := s.Bins[len(s.Bins)-1]; last.Upper != 40*time.Millisecond {
		t.Errorf("last bin ends at %v, want 40ms", last.Upper)
	}
	if len(s.Bins) != 27 { // 100 µs to 40 ms: 26 R10 steps
		t.Errorf("%d bins, want 27", len(s.Bins))
	}
}

func TestHistogramMergeEqualsRecordingTogether(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	all, a, b := bench.NewHistogram(), bench.NewHistogram(), bench.NewHistogram()
	for i := range 50_000 {
		v := time.Duration(rng.Int64N(int64(20*time.Millisecond))) + 1
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(b)
	got, want := a.Summary(), all.Summary()
	if !slices.Equal(got.Bins, want.Bins) || got.P50 != want.P50 || got.P99 != want.P99 || got.P999 != want.P999 || got.Samples != want.Samples {
		t.Errorf("merged summary %+v\nwant %+v", got, want)
	}
}

func TestHistogramClampsOutOfRangeValues(t *testing.T) {
	h := bench.NewHistogram()
	h.Record(0)
	h.Record(-time.Second)
	h.Record(3 * time.Hour)
	s := h.Summary()
	if s.Samples != 3 {
		t.Fatalf("Samples = %d, want 3: out-of-range values must be clamped, not dropped", s.Samples)
	}
	if s.Min != 1 {
		t.Errorf("min = %v, want 1ns", s.Min)
	}
	if !within(s.Max, time.Hour, 0.001) {
		t.Errorf("max = %v, want about 1h", s.Max)
	}
}

func TestEmptyHistogram(t *testing.T) {
	s := bench.NewHistogram().Summary()
	if s.Samples != 0 || s.P99 != 0 || len(s.Bins) != 0 {
		t.Errorf("empty summary = %+v, want zero", s)
	}
}
