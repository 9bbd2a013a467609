package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseFio(t *testing.T) {
	// Real output of fio 3.33 for the etcd job on a virtual disk.
	out, err := os.ReadFile(filepath.Join("testdata", "fio-3.33-etcd.json"))
	if err != nil {
		t.Fatal(err)
	}
	// fio may print a warning before its JSON.
	out = append([]byte("fio: some warning\n"), out...)
	lat, iops, err := parseFio(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Latency{
		Samples: 10029, Min: 41003, Mean: 1439964,
		P50: 268288, P90: 3948544, P99: 5472256, P999: 23724032, Max: 59369007,
	}
	if !equalLatency(lat, want) {
		t.Errorf("parsed %+v\nwant   %+v", lat, want)
	}
	if iops < 681 || iops > 682 {
		t.Errorf("iops %v, want 681.64", iops)
	}

	for _, bad := range []string{`{"jobs": []}`, `{"jobs": [{"error": 5}]}`, `{"jobs": [{"sync": {}}]}`, `not json`} {
		if _, _, err := parseFio([]byte(bad)); err == nil {
			t.Errorf("parseFio(%s) succeeded", bad)
		}
	}
}

func equalLatency(a, b Latency) bool {
	a.Bins, b.Bins = nil, nil
	return a.Samples == b.Samples && a.Min == b.Min && a.Mean == b.Mean && a.P50 == b.P50 &&
		a.P90 == b.P90 && a.P99 == b.P99 && a.P999 == b.P999 && a.Max == b.Max
}

func TestMedianRound(t *testing.T) {
	r := func(p50 time.Duration, iops float64) FioRound {
		return FioRound{Fio: Latency{Samples: 10, P50: p50}, FioIOPS: iops}
	}
	// One round disturbed by a noisy neighbour does not move the median.
	l, iops := medianRound([]FioRound{r(100, 1000), r(5000, 50), r(110, 900)}, func(r FioRound) (Latency, float64) { return r.Fio, r.FioIOPS })
	if l.P50 != 110 || iops != 900 || l.Samples != 30 {
		t.Errorf("median p50 %v iops %v samples %d, want 110, 900, 30", l.P50, iops, l.Samples)
	}
}
