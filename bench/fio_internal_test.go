package bench

import (
	"os"
	"path/filepath"
	"strings"
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

func TestFioVerdict(t *testing.T) {
	round := func(fio50, fio99, fjord50, fjord99 time.Duration) FioRound {
		return FioRound{Fio: Latency{P50: fio50, P99: fio99}, Fjord: Latency{P50: fjord50, P99: fjord99}}
	}
	c := &FioComparison{
		Rounds: []FioRound{round(100, 1000, 100, 1000), round(100, 3000, 100, 1000), round(100, 2000, 100, 1000)},
		Fio:    Latency{P50: 100, P99: 2000}, Fjord: Latency{P50: 100, P99: 1000},
	}
	if v := fioVerdict(c); !strings.Contains(v, "inside the range fio itself spans") {
		t.Errorf("fjord's p99 inside fio's own spread: %q", v)
	}
	c.Fjord.P50 = 99 // a hair under fio's best round is still inside
	if v := fioVerdict(c); !strings.Contains(v, "inside the range fio itself spans") {
		t.Errorf("fjord's p50 level with fio's best round: %q", v)
	}
	c.Fjord.P99 = 500
	if v := fioVerdict(c); !strings.Contains(v, "beyond the range") {
		t.Errorf("fjord's p99 outside fio's own spread: %q", v)
	}
	c.Agree = true
	if v := fioVerdict(c); !strings.Contains(v, "within ±10%") {
		t.Errorf("agreeing: %q", v)
	}
}
