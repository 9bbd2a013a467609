package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/bench"
)

// chromium returns the headless browser the layout test renders reports
// in. Without one it skips, unless CI is set: there the test must run.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set and no chromium is installed: install Debian's chromium package (make test does) so the HTML report's layout is checked")
	}
	t.Skip("chromium not found: install Debian's chromium package (make test installs it) to check the HTML report's layout in a browser")
	return ""
}

// layoutProbe runs in the rendered page and records, for every chart, the
// SVG's viewBox and the box of every label as the browser laid it out.
const layoutProbe = `<script>
const charts = [...document.querySelectorAll("svg")].map(svg => ({
  chart: svg.getAttribute("aria-label"),
  w: svg.viewBox.baseVal.width, h: svg.viewBox.baseVal.height,
  labels: [...svg.querySelectorAll("text")].map(t => { const b = t.getBBox(); return {text: t.textContent, x: b.x, y: b.y, w: b.width, h: b.height}; }),
}));
const pre = document.createElement("pre");
pre.id = "layout";
pre.textContent = JSON.stringify(charts);
document.body.appendChild(pre);
</script>`

type labelBox struct {
	Text       string
	X, Y, W, H float64
}

type chartLayout struct {
	Chart  string
	W, H   float64
	Labels []labelBox
}

// renderLayout writes page to a file, opens it in headless chromium and
// returns the label boxes the probe found.
func renderLayout(t *testing.T, browser, page string) []chartLayout {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, []byte(strings.Replace(page, "</body>", layoutProbe+"</body>", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--dump-dom", "file://"+file)
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --dump-dom: %v\n%s", browser, err, stderr.String())
	}
	m := regexp.MustCompile(`(?s)<pre id="layout">(.*?)</pre>`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("the layout probe left no result in the page chromium rendered:\n%s\n%s", out, stderr.String())
	}
	var charts []chartLayout
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &charts); err != nil {
		t.Fatalf("layout probe: %v: %s", err, m[1])
	}
	return charts
}

// checkLayout fails for every label that leaves its chart's viewBox or
// overlaps another label of the same chart.
func checkLayout(t *testing.T, charts []chartLayout, want int) {
	t.Helper()
	if len(charts) != want {
		t.Fatalf("%d charts rendered, want %d", len(charts), want)
	}
	const slack = 0.5 // a rounding error, not a visible clip
	for _, c := range charts {
		if len(c.Labels) == 0 {
			t.Errorf("%s: no labels rendered", c.Chart)
		}
		for i, a := range c.Labels {
			if a.W <= 0 || a.H <= 0 {
				t.Errorf("%s: label %q has no size: %+v", c.Chart, a.Text, a)
			}
			if a.X < -slack || a.Y < -slack || a.X+a.W > c.W+slack || a.Y+a.H > c.H+slack {
				t.Errorf("%s: label %q at x %.1f–%.1f, y %.1f–%.1f is clipped by the %.0f×%.0f viewBox",
					c.Chart, a.Text, a.X, a.X+a.W, a.Y, a.Y+a.H, c.W, c.H)
			}
			for _, b := range c.Labels[i+1:] {
				dx := min(a.X+a.W, b.X+b.W) - max(a.X, b.X)
				dy := min(a.Y+a.H, b.Y+b.H) - max(a.Y, b.Y)
				if dx > slack && dy > slack {
					t.Errorf("%s: labels %q and %q overlap by %.1f×%.1f", c.Chart, a.Text, b.Text, dx, dy)
				}
			}
		}
	}
}

// crowdedLatency is a noisy neighbour's distribution: a body near 150 µs
// and a tail whose p99 and p99.9 sit a few percent apart.
func crowdedLatency() bench.Latency {
	h := bench.NewHistogram()
	for i := range 9_890 {
		h.Record(time.Duration(140_000 + i%20_000))
	}
	for range 95 {
		h.Record(2 * time.Millisecond)
	}
	for range 15 {
		h.Record(2100 * time.Microsecond)
	}
	return h.Summary()
}

func TestHTMLReportLayoutInChromium(t *testing.T) {
	browser := chromium(t)

	rep := sampleDiskReport()
	crowded := crowdedLatency()
	if crowded.P999 > crowded.P99*11/10 {
		t.Fatalf("the fixture must put p99 and p99.9 close together: %v, %v", crowded.P99, crowded.P999)
	}
	for i := range rep.Workloads {
		rep.Workloads[i].Latency = crowded
	}
	// A workload without a p99 check: its axis ends at its last bin, so
	// the p99.9 mark and the last tick sit at the right edge.
	edge := rep.Workloads[0]
	edge.Name, edge.Measures = bench.WorkloadReadQD1, "pread"
	edge.Latency = crowded
	rep.Workloads = append(rep.Workloads, edge)
	// And one whose percentiles coincide.
	same := edge
	same.Name = bench.WorkloadReadQD16
	same.Latency.P50, same.Latency.P99, same.Latency.P999 = crowded.P99, crowded.P99, crowded.P99
	rep.Workloads = append(rep.Workloads, same)
	// And one whose last bin ends on a decade, 100 ms: the last tick, and
	// its label, fall on the plot's right end.
	long := edge
	long.Name = bench.WorkloadWriteQD16
	h := bench.NewHistogram()
	for i := range 1000 {
		h.Record(time.Duration(1+i%90) * time.Millisecond)
	}
	long.Latency = h.Summary()
	if last := long.Latency.Bins[len(long.Latency.Bins)-1].Upper; last != 100*time.Millisecond {
		t.Fatalf("the fixture's last bin ends at %v, want 100ms", last)
	}
	rep.Workloads = append(rep.Workloads, long)
	rep.Verdicts = bench.Judge(rep)
	var b strings.Builder
	if err := bench.WriteHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, renderLayout(t, browser, b.String()), len(rep.Workloads))

	git := sampleGitReport()
	git.Workloads[0].Latency = crowded
	ls := git.Workloads[0]
	ls.Name = bench.GitLsRemote
	git.Workloads = append(git.Workloads, ls)
	git.Verdicts = bench.JudgeGit(git)
	b.Reset()
	if err := bench.WriteGitHTML(&b, git); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, renderLayout(t, browser, b.String()), len(git.Workloads))
	if testing.Verbose() {
		fmt.Println("rendered in", browser)
	}
}
