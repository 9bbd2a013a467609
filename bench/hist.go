package bench

import (
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// The histogram tracks 1 ns to one hour with three significant digits: every
// percentile is within 0.1% of the exact sample, from a 10 µs NVMe flush to a
// storage stall of minutes, in about 200 KiB per histogram.
const (
	histLowest  = 1
	histHighest = int64(time.Hour)
	histDigits  = 3
)

// Histogram records latencies. It is not safe for concurrent use: each worker
// records into its own and the results are merged.
type Histogram struct {
	h *hdrhistogram.Histogram
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(histLowest, histHighest, histDigits)}
}

// Record adds one sample. Values outside 1 ns to one hour are clamped to that
// range rather than dropped, so the sample count stays honest.
func (h *Histogram) Record(d time.Duration) {
	v := min(max(int64(d), histLowest), histHighest)
	// Cannot fail: v is inside the trackable range.
	_ = h.h.RecordValue(v)
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	h.h.Merge(o.h)
}

// Count returns the number of samples recorded.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Percentile returns the latency at percentile p (0 to 100): the smallest
// recorded value that p percent of the samples are at or below, within the
// histogram's 0.1% resolution. An empty histogram returns 0.
func (h *Histogram) Percentile(p float64) time.Duration {
	return time.Duration(h.h.ValueAtPercentile(p))
}

// Summary returns the percentiles and the binned distribution of h.
func (h *Histogram) Summary() Latency {
	if h.Count() == 0 {
		return Latency{}
	}
	return Latency{
		Samples: h.Count(),
		Min:     time.Duration(h.h.Min()),
		Mean:    time.Duration(math.Round(h.h.Mean())),
		P50:     h.Percentile(50),
		P90:     h.Percentile(90),
		P99:     h.Percentile(99),
		P999:    h.Percentile(99.9),
		Max:     time.Duration(h.h.Max()),
		Bins:    h.bins(),
	}
}

// Latency summarizes a latency distribution. In JSON every duration is an
// integer number of nanoseconds.
type Latency struct {
	// Samples is the number of operations measured after the warmup.
	Samples int64         `json:"samples"`
	Min     time.Duration `json:"min_ns"`
	Mean    time.Duration `json:"mean_ns"`
	P50     time.Duration `json:"p50_ns"`
	P90     time.Duration `json:"p90_ns"`
	P99     time.Duration `json:"p99_ns"`
	P999    time.Duration `json:"p99_9_ns"`
	Max     time.Duration `json:"max_ns"`
	// Bins is the distribution in log-spaced bins, ten per decade, from
	// the first bin holding a sample to the last. Empty bins in between
	// are kept so the list plots as is.
	Bins []Bin `json:"histogram"`
}

// Bin is one bar of a latency histogram: the samples above the previous bin's
// upper bound and at or below this one's (Prometheus "le" semantics).
type Bin struct {
	Upper time.Duration `json:"le_ns"`
	Count int64         `json:"count"`
}

// binEdges are the upper bounds of the ten bins in one decade, from the
// Renard R10 series, so axis labels read as round numbers.
func binEdges() [10]float64 {
	return [10]float64{1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8, 10}
}

// binUpper returns the upper bound of bin i, where bin 0 ends at 1.25 ns and
// every ten bins span one decade.
func binUpper(i int) time.Duration {
	decade := math.Pow(10, float64(i/10))
	return time.Duration(math.Round(binEdges()[i%10] * decade))
}

// binIndex returns the bin whose range holds v nanoseconds.
func binIndex(v int64) int {
	// The R10 edges sit within 2% of 10^(k/10), so this starts at or
	// just below the answer.
	i := max(int(math.Floor(10*math.Log10(float64(max(v, 1)))))-1, 0)
	for int64(binUpper(i)) < v {
		i++
	}
	return i
}

// bins folds the histogram's fine buckets into log-spaced bins. A fine
// bucket is narrower than 0.1% of its value, far finer than a bin, so
// counting it at its midpoint moves no sample by more than that.
func (h *Histogram) bins() []Bin {
	type fine struct {
		bin   int
		count int64
	}
	var fines []fine
	for _, bar := range h.h.Distribution() {
		if bar.Count > 0 {
			fines = append(fines, fine{binIndex(bar.From + (bar.To-bar.From)/2), bar.Count})
		}
	}
	if len(fines) == 0 {
		return nil
	}
	lo, hi := fines[0].bin, fines[len(fines)-1].bin
	out := make([]Bin, hi-lo+1)
	for i := range out {
		out[i].Upper = binUpper(lo + i)
	}
	for _, f := range fines {
		out[f.bin-lo].Count += f.count
	}
	return out
}
