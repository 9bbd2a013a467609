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
	const us = time.Microsecond
	round := func(fio50, fio99 time.Duration) FioRound {
		return FioRound{Fio: Latency{P50: fio50, P99: fio99}}
	}
	// fio's rounds span p50 181µs to 214µs and p99 354µs to 412µs, the
	// figures of the run the issue reported.
	rounds := []FioRound{round(181*us, 354*us), round(214*us, 412*us), round(190*us, 380*us)}
	fio := Latency{P50: 190 * us, P99: 380 * us}
	for _, tt := range []struct {
		name             string
		fjord50, fjord99 time.Duration
		want             []string
	}{
		{"the reported run: both medians above fio's range", 216 * us, 434 * us,
			[]string{"beyond the range", "p50 216µs is above fio's 181µs to 214µs", "p99 434µs is above fio's 354µs to 412µs", "+13.7%"}},
		{"p50 one step above the range", 215 * us, 400 * us,
			[]string{"beyond the range", "p50 215µs is above fio's 181µs to 214µs", "p99 400µs is inside fio's 354µs to 412µs"}},
		{"p99 one step below the range", 200 * us, 353 * us,
			[]string{"beyond the range", "p99 353µs is below fio's 354µs to 412µs"}},
		{"both at the top of the range", 214 * us, 412 * us,
			[]string{"inside the range fio itself spans", "p50 214µs is inside fio's 181µs to 214µs", "p99 412µs is inside"}},
		{"both at the bottom of the range, off by less than shown", 181*us + 400, 354*us - 400,
			[]string{"inside the range fio itself spans", "p50 181µs is inside", "p99 354µs is inside"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &FioComparison{Rounds: rounds, Fio: fio, Fjord: Latency{P50: tt.fjord50, P99: tt.fjord99}}
			v := fioVerdict(c)
			for _, w := range tt.want {
				if !strings.Contains(v, w) {
					t.Errorf("verdict lacks %q:\n%s", w, v)
				}
			}
			if strings.Contains(v, "inside the range") == strings.Contains(v, "beyond the range") {
				t.Errorf("verdict must say inside or beyond, not both or neither: %s", v)
			}
		})
	}
	c := &FioComparison{Rounds: rounds, Fio: fio, Fjord: Latency{P50: 200 * us, P99: 400 * us}, Agree: true}
	if v := fioVerdict(c); !strings.Contains(v, "within ±10%") || !strings.Contains(v, "p50 200µs against fio's 190µs (+5.3%)") {
		t.Errorf("agreeing: %q", v)
	}
}
