package bench

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fjordhq/fjord/internal/style"
)

// WriteHTML writes rep as one self-contained HTML page: the device, the
// verdicts, the results table and a latency histogram per workload, drawn as
// inline SVG. It loads nothing, runs no script and opens offline.
func WriteHTML(w io.Writer, rep *DiskReport) error {
	page := htmlPage{Disk: rep}
	for _, r := range rep.Workloads {
		page.Charts = append(page.Charts, chartFor(r.Name, r.Title, r.Measures, r.Latency, p99Lines(rep.Verdicts, r.Name)))
	}
	return writePage(w, "disk", page)
}

// WriteGitHTML writes rep as one self-contained HTML page in the style of
// WriteHTML: the repository, the verdicts, the results table and a latency
// histogram per workload.
func WriteGitHTML(w io.Writer, rep *GitReport) error {
	page := htmlPage{Git: rep}
	for _, r := range rep.Workloads {
		page.Charts = append(page.Charts, chartFor(r.Name, r.Title, "one git command", r.Latency, p99Lines(rep.Verdicts, r.Name)))
	}
	return writePage(w, "git", page)
}

// p99Lines returns the pass and fail lines, in milliseconds, of the p99
// checks on workload.
func p99Lines(vs []Verdict, workload string) []float64 {
	var lines []float64
	for _, v := range vs {
		if v.Workload == workload && v.Metric == "p99" {
			lines = append(lines, v.Pass, v.Fail)
		}
	}
	return lines
}

// writePage renders the page template name.
func writePage(w io.Writer, name string, page htmlPage) error {
	t, err := template.New("report").Funcs(template.FuncMap{
		"latency":    formatLatency,
		"count":      formatCount,
		"int":        func(n int64) string { return formatCount(float64(n)) },
		"bytes":      func(n uint64) string { return formatBytes(int64(n)) },
		"size":       formatBytes,
		"pct":        func(f float64) string { return fmt.Sprintf("%+.1f%%", 100*f) },
		"upper":      strings.ToUpper,
		"rfc3339":    func(t time.Time) string { return t.Format(time.RFC3339) },
		"join":       strings.Join,
		"diff":       func(a, b time.Duration) string { return fmt.Sprintf("%+.1f%%", 100*relDiff(b, a)) },
		"deref":      func(b *bool) bool { return b != nil && *b },
		"fioVerdict": fioVerdict,
		"inc":        func(i int) int { return i + 1 },
		"repoLine":   repoLine,
		"includes":   includesLine,
		"join2":      func(a, b []string) []string { return append(append([]string{}, a...), b...) },
		"css":        style.CSS,
	}).Parse(htmlTemplate)
	if err != nil {
		return fmt.Errorf("bench: html template: %w", err)
	}
	return t.ExecuteTemplate(w, name, page)
}

// htmlPage is what the templates render: one of the two reports.
type htmlPage struct {
	Disk   *DiskReport
	Git    *GitReport
	Charts []chart
}

// chart is the geometry of one latency histogram, in SVG user units.
type chart struct {
	Name, Title, Measures string
	Samples               int64
	Width, Height         int
	Left, Top, Bottom     float64 // the plot area's left, top and bottom edges
	TickEnd               float64 // where axis ticks end, below Bottom
	Bars                  []chartBar
	Ticks                 []chartTick
	Marks                 []chartMark
	Empty                 bool
}

type chartBar struct {
	X, Y, W, H float64
	Label      string // tooltip
}

type chartTick struct {
	X      float64 // the tick
	LabelX float64 // the middle of its label, kept inside the chart
	Label  string
}

type chartMark struct {
	X       float64 // the line
	Y       float64 // where the line starts, under its label
	Label   string
	Class   string // "pct" for percentiles, "pass"/"fail" for thresholds
	LabelX  float64
	LabelY  float64 // baseline
	AnchorR bool    // label to the left of the line
}

// Chart layout, in SVG user units (pixels at 100%).
const (
	chartW      = 760
	chartPlotH  = 156 // the bars' area
	chartLeft   = 48
	chartRight  = 16
	chartBottom = 36 // below the plot: ticks and their labels
	chartEdge   = 2  // the least room between a label and the chart's edge
	// Mark labels sit in rows above the plot, as many rows as needed so
	// that no two labels overlap.
	chartRowH   = 14
	chartRowTop = 12 // baseline of the first row
	chartGap    = 8  // the least room between two labels in a row
	// Label widths are estimated from the rune count at 11px: a little
	// wider than system-ui, DejaVu Sans and Liberation Sans set digits
	// and lower case, bold a little wider again.
	charW     = 6.6
	charWBold = 7.4
)

// labelWidth estimates the width of s set in the chart's font.
func labelWidth(s string, bold bool) float64 {
	w := charW
	if bold {
		w = charWBold
	}
	return float64(utf8.RuneCountInString(s)) * w
}

// chartFor lays out a latency histogram on a logarithmic time axis, with
// counts on a logarithmic scale too so a tail of a few samples stays
// visible. The axis stretches to include the threshold lines (lines, in
// milliseconds), so the gap between the figures and the line shows the
// headroom. Labels are placed so that none leaves the chart and none
// overlaps another: the test renders the page in Chromium to hold it to
// that.
func chartFor(name, title, measures string, l Latency, lines []float64) chart {
	c := chart{Name: name, Title: title, Measures: measures, Samples: l.Samples, Width: chartW, Left: chartLeft}
	bins := l.Bins
	if len(bins) == 0 {
		c.Empty = true
		return c
	}
	// Axis range in log10(ns): from the lower edge of the first bin to
	// the upper edge of the last, widened to the threshold lines.
	lo := math.Log10(float64(bins[0].Upper)) - 0.1
	hi := math.Log10(float64(bins[len(bins)-1].Upper))
	for _, l := range lines {
		hi = max(hi, math.Log10(l*1e6)+0.05)
		lo = min(lo, math.Log10(l*1e6)-0.05)
	}
	plotW := float64(chartW - chartLeft - chartRight)
	x := func(ns float64) float64 { return chartLeft + (math.Log10(ns)-lo)/(hi-lo)*plotW }

	// The marks first: their rows decide where the plot starts.
	type mark struct {
		x            float64
		label, class string
	}
	marks := []mark{
		{x(float64(l.P50)), "p50 " + formatLatency(l.P50), "pct"},
		{x(float64(l.P99)), "p99 " + formatLatency(l.P99), "pct"},
		{x(float64(l.P999)), "p99.9 " + formatLatency(l.P999), "pct"},
	}
	for i, ms := range lines {
		if i == 1 && ms == lines[0] {
			break // no warning band: one line
		}
		class, what := "pass", "pass line"
		if i == 1 {
			class, what = "fail", "fail line"
		}
		marks = append(marks, mark{x(ms * 1e6), fmt.Sprintf("%s %s", what, formatThreshold(ms)), class})
	}
	var rows [][][2]float64 // per row, the extents of the labels placed in it
	for _, m := range marks {
		w := labelWidth(m.label, m.class != "pct")
		// Right of the line when it fits, else left of it.
		right := [2]float64{m.x + 4, m.x + 4 + w}
		left := [2]float64{m.x - 4 - w, m.x - 4}
		sides := [][2]float64{right, left}
		if right[1] > chartW-chartEdge {
			sides = [][2]float64{left}
		}
		free := func(row [][2]float64, e [2]float64) bool {
			for _, o := range row {
				if e[0] < o[1]+chartGap && o[0] < e[1]+chartGap {
					return false
				}
			}
			return e[0] >= chartEdge && e[1] <= chartW-chartEdge
		}
		placed := false
		for r := 0; !placed; r++ {
			if r == len(rows) {
				rows = append(rows, nil)
			}
			for _, e := range sides {
				if free(rows[r], e) {
					rows[r] = append(rows[r], e)
					cm := chartMark{X: m.x, Label: m.label, Class: m.class, LabelY: float64(chartRowTop + r*chartRowH)}
					cm.AnchorR = e[0] < m.x
					cm.LabelX = e[0]
					if cm.AnchorR {
						cm.LabelX = e[1]
					}
					cm.Y = cm.LabelY + 4
					c.Marks = append(c.Marks, cm)
					placed = true
					break
				}
			}
		}
	}
	c.Top = float64(chartRowTop+(len(rows)-1)*chartRowH) + 8
	c.Bottom = c.Top + chartPlotH
	c.TickEnd = c.Bottom + 4
	c.Height = int(math.Ceil(c.Bottom)) + chartBottom

	var maxCount int64
	for _, b := range bins {
		maxCount = max(maxCount, b.Count)
	}
	top := math.Log10(float64(maxCount) + 1)
	prev := math.Pow(10, lo)
	for _, b := range bins {
		x0, x1 := x(prev), x(float64(b.Upper))
		prev = float64(b.Upper)
		if b.Count == 0 {
			continue
		}
		h := math.Log10(float64(b.Count)+1) / top * chartPlotH
		c.Bars = append(c.Bars, chartBar{
			X: x0 + 0.5, Y: c.Bottom - h, W: max(x1-x0-1, 1), H: h,
			Label: fmt.Sprintf("up to %s: %s samples", formatLatency(b.Upper), formatCount(float64(b.Count))),
		})
	}
	for d := math.Ceil(lo); d <= hi; d++ {
		tx := x(math.Pow(10, d))
		label := decadeLabel(int(d))
		half := labelWidth(label, false) / 2
		c.Ticks = append(c.Ticks, chartTick{X: tx, LabelX: min(max(tx, half+chartEdge), chartW-half-chartEdge), Label: label})
	}
	return c
}

// formatThreshold formats a threshold given in milliseconds: 10 ms, 500 ms,
// 60 s.
func formatThreshold(ms float64) string {
	if ms >= 1000 {
		return formatCount(ms/1000) + " s"
	}
	return formatCount(ms) + " ms"
}

// decadeLabel names 10^d nanoseconds for an axis tick: 1µs, 10ms, 1s.
func decadeLabel(d int) string {
	units := []string{"ns", "µs", "ms", "s"}
	u := min(d/3, len(units)-1)
	return fmt.Sprintf("%.0f%s", math.Pow(10, float64(d-3*u)), units[u])
}

const htmlTemplate = `
{{- define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}}</title>
<style>
{{css}}
</style>
</head>
<body>
{{- end}}

{{- define "verdicts"}}
{{- if .}}
<h2>Verdicts</h2>
<table>
<tr><th></th><th>check</th><th>where it stands</th><th>source</th></tr>
{{- range .}}
<tr><td><span class="status {{.Status}}">{{upper (print .Status)}}</span></td><td>{{.Title}}</td><td>{{.Summary}}</td><td class="src">{{if .SourceURL}}<a href="{{.SourceURL}}">{{.Source}}</a>{{else}}{{.Source}}{{end}}</td></tr>
{{- end}}
</table>
{{- end}}
{{- end}}

{{- define "charts"}}
<h2>Latency histograms</h2>
<p class="sub">Bars: samples per latency bin, ten bins per decade; both axes logarithmic so a tail of a few samples stays visible. Dashed: percentiles. Solid: the check's pass and fail lines.</p>
{{- range .}}
<figure>
<figcaption>{{.Name}} <span>{{.Title}}; one sample = {{.Measures}}; {{int .Samples}} samples</span></figcaption>
{{- if .Empty}}
<p>No samples.</p>
{{- else}}
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.Width}} {{.Height}}" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="latency histogram of {{.Name}}">
<line class="axis" x1="{{.Left}}" y1="{{.Bottom}}" x2="{{.Width}}" y2="{{.Bottom}}"/>
{{- range .Bars}}
<rect class="bar" x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" width="{{printf "%.1f" .W}}" height="{{printf "%.1f" .H}}"><title>{{.Label}}</title></rect>
{{- end}}
{{- $bottom := .Bottom}}{{$tickEnd := .TickEnd}}
{{- range .Ticks}}
<line class="axis" x1="{{printf "%.1f" .X}}" y1="{{$bottom}}" x2="{{printf "%.1f" .X}}" y2="{{$tickEnd}}"/>
<text x="{{printf "%.1f" .LabelX}}" y="{{printf "%.0f" $bottom}}" dy="16" text-anchor="middle">{{.Label}}</text>
{{- end}}
{{- range .Marks}}
<line class="mark-{{.Class}}" x1="{{printf "%.1f" .X}}" y1="{{printf "%.0f" .Y}}" x2="{{printf "%.1f" .X}}" y2="{{$bottom}}"/>
<text class="mark-{{.Class}}" x="{{printf "%.1f" .LabelX}}" y="{{printf "%.0f" .LabelY}}" text-anchor="{{if .AnchorR}}end{{else}}start{{end}}">{{.Label}}</text>
{{- end}}
</svg>
{{- end}}
</figure>
{{- end}}
{{- end}}

{{- define "notes"}}
{{- if .}}
<h2>Notes</h2>
<ul class="notes">
{{- range .}}<li>{{.}}</li>{{end}}
</ul>
{{- end}}
{{- end}}

{{- define "disk"}}
{{- $r := .Disk}}
{{- template "head" (print "fjord bench disk: " $r.Dir)}}
<h1>fjord bench disk: {{$r.Dir}}</h1>
<p class="sub">host {{$r.Host}}, kernel {{$r.Device.Kernel}}, {{rfc3339 $r.Started}}; each workload {{latency $r.Warmup}} warmup, then {{latency $r.Duration}} measured</p>

<h2>Device</h2>
{{- with $r.Device}}
<table>
<tr><th>filesystem</th><td>{{.Filesystem}} on {{.Source}}, mounted at {{.MountPoint}}</td></tr>
<tr><th>mount options</th><td>{{.MountOptions}}; {{.SuperOptions}}</td></tr>
<tr><th>block device</th><td>{{if .BlockDevice}}{{.BlockDevice}}{{if .Partition}}, partition {{.Partition}}{{end}}{{if .Underlying}} over {{join .Underlying ", "}}{{end}}{{else}}none found{{end}}</td></tr>
<tr><th>model</th><td>{{if .Model}}{{.Model}}{{else}}unknown{{end}}</td></tr>
<tr><th>rotational</th><td>{{if .Rotational}}{{if deref .Rotational}}yes{{else}}no{{end}}{{else}}unknown{{end}}</td></tr>
<tr><th>write cache</th><td>{{if .WriteCache}}{{.WriteCache}}{{else}}unknown{{end}}</td></tr>
<tr><th>scheduler</th><td>{{if .Scheduler}}{{.Scheduler}}{{else}}unknown{{end}}</td></tr>
<tr><th>space</th><td>{{bytes .FreeBytes}} free of {{bytes .TotalBytes}}</td></tr>
<tr><th>cgroup I/O limits</th><td>{{if .IOLimits}}{{range .IOLimits}}{{.}}<br>{{end}}{{else}}none{{end}}</td></tr>
</table>
{{- end}}
{{- template "verdicts" $r.Verdicts}}

<h2>Results</h2>
<table>
<tr><th>workload</th><th>measures</th><th class="num">samples</th><th class="num">p50</th><th class="num">p90</th><th class="num">p99</th><th class="num">p99.9</th><th class="num">max</th><th class="num">IOPS</th><th class="num">MB/s</th></tr>
{{- range $r.Workloads}}
<tr><td>{{.Name}}</td><td>{{.Measures}}</td><td class="num">{{int .Latency.Samples}}</td><td class="num">{{latency .Latency.P50}}</td><td class="num">{{latency .Latency.P90}}</td><td class="num">{{latency .Latency.P99}}</td><td class="num">{{latency .Latency.P999}}</td><td class="num">{{latency .Latency.Max}}</td><td class="num">{{count .IOPS}}</td><td class="num">{{printf "%.1f" .MBps}}</td></tr>
{{- end}}
</table>
{{- range $r.Workloads}}{{with .Neighbour}}
<p>Noisy neighbour: {{.Readers}} readers at {{count .ReadIOPS}} IOPS and {{.Writers}} writers at {{count .WriteIOPS}} IOPS alongside the WAL{{if .BaselineP99}}; WAL p99 {{latency .BaselineP99}} on a quiet disk, {{printf "%.1f" .P99Rise}}× that with the neighbour{{end}}.</p>
{{- end}}{{end}}
{{- template "charts" .Charts}}

{{- with $r.Fio}}
<h2>fio comparison</h2>
<p>The same etcd job run by fio and by fjord on the same filesystem, {{len .Rounds}} alternating rounds; each figure is the median of the rounds. fdatasync latency.</p>
<p><code>{{.Command}}</code> ({{.Version}})</p>
<table>
<tr><th></th><th class="num">fio</th><th class="num">fjord</th><th class="num">diff</th></tr>
<tr><td>p50</td><td class="num">{{latency .Fio.P50}}</td><td class="num">{{latency .Fjord.P50}}</td><td class="num">{{diff .Fio.P50 .Fjord.P50}}</td></tr>
<tr><td>p90</td><td class="num">{{latency .Fio.P90}}</td><td class="num">{{latency .Fjord.P90}}</td><td class="num">{{diff .Fio.P90 .Fjord.P90}}</td></tr>
<tr><td>p99</td><td class="num">{{latency .Fio.P99}}</td><td class="num">{{latency .Fjord.P99}}</td><td class="num">{{diff .Fio.P99 .Fjord.P99}}</td></tr>
<tr><td>p99.9</td><td class="num">{{latency .Fio.P999}}</td><td class="num">{{latency .Fjord.P999}}</td><td class="num">{{diff .Fio.P999 .Fjord.P999}}</td></tr>
<tr><td>max</td><td class="num">{{latency .Fio.Max}}</td><td class="num">{{latency .Fjord.Max}}</td><td class="num">{{diff .Fio.Max .Fjord.Max}}</td></tr>
<tr><td>IOPS</td><td class="num">{{count .FioIOPS}}</td><td class="num">{{count .FjordIOPS}}</td><td></td></tr>
</table>
<p>By round (p50 / p99):{{range $i, $r := .Rounds}} {{inc $i}}: fio {{latency $r.Fio.P50}} / {{latency $r.Fio.P99}}, fjord {{latency $r.Fjord.P50}} / {{latency $r.Fjord.P99}};{{end}}</p>
<p>{{fioVerdict .}}.</p>
{{- end}}
{{- template "notes" (join2 $r.Device.Notes $r.Notes)}}
</body>
</html>
{{end}}

{{- define "git"}}
{{- $r := .Git}}
{{- template "head" (print "fjord bench git: " $r.URL)}}
<h1>fjord bench git: {{$r.URL}}</h1>
<p class="sub">{{$r.GitVersion}}, {{rfc3339 $r.Started}}; {{$r.Concurrency}} client(s) at once; each workload {{latency $r.Warmup}} warmup, then {{latency $r.Duration}} measured</p>

<h2>Repository</h2>
<table>
<tr><th>default branch</th><td>{{$r.Branch}} at {{$r.Head}}</td></tr>
<tr><th>commits</th><td class="num">{{int $r.Repo.Commits}}</td></tr>
<tr><th>refs</th><td class="num">{{int $r.Repo.Refs}}</td></tr>
<tr><th>objects</th><td class="num">{{int $r.Repo.Objects}}</td></tr>
<tr><th>size</th><td class="num">{{size $r.Repo.Bytes}} as a full clone receives them</td></tr>
</table>
<p class="includes">{{includes $r}}</p>
{{- template "verdicts" $r.Verdicts}}

<h2>Results</h2>
<table>
<tr><th>workload</th><th>command</th><th class="num">ops</th><th class="num">errors</th><th class="num">p50</th><th class="num">p90</th><th class="num">p99</th><th class="num">max</th><th class="num">ops/s</th><th class="num">MB/s</th></tr>
{{- range $r.Workloads}}
<tr><td>{{.Name}}</td><td><code>{{.Command}}</code></td><td class="num">{{int .Ops}}</td><td class="num">{{int .Errors}}</td><td class="num">{{latency .Latency.P50}}</td><td class="num">{{latency .Latency.P90}}</td><td class="num">{{latency .Latency.P99}}</td><td class="num">{{latency .Latency.Max}}</td><td class="num">{{printf "%.1f" .OpsPerSec}}</td><td class="num">{{printf "%.1f" .MBps}}</td></tr>
{{- end}}
</table>
{{- template "charts" .Charts}}
{{- template "notes" $r.Notes}}
</body>
</html>
{{end}}
`
