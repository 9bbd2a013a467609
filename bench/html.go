package bench

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes rep as one self-contained HTML page: the device, the
// verdicts, the results table and a latency histogram per workload, drawn as
// inline SVG. It loads nothing, runs no script and opens offline.
func WriteHTML(w io.Writer, rep *DiskReport) error {
	page := htmlPage{Report: rep}
	for _, r := range rep.Workloads {
		var lines []float64
		for _, v := range rep.Verdicts {
			if v.Workload == r.Name && v.Metric == "p99" {
				lines = append(lines, v.Pass, v.Fail)
			}
		}
		page.Charts = append(page.Charts, chartFor(r, lines))
	}
	t, err := template.New("report").Funcs(template.FuncMap{
		"latency":    formatLatency,
		"count":      formatCount,
		"int":        func(n int64) string { return formatCount(float64(n)) },
		"bytes":      func(n uint64) string { return formatBytes(int64(n)) },
		"pct":        func(f float64) string { return fmt.Sprintf("%+.1f%%", 100*f) },
		"upper":      strings.ToUpper,
		"rfc3339":    func(t time.Time) string { return t.Format(time.RFC3339) },
		"join":       strings.Join,
		"diff":       func(a, b time.Duration) string { return fmt.Sprintf("%+.1f%%", 100*relDiff(b, a)) },
		"deref":      func(b *bool) bool { return b != nil && *b },
		"fioVerdict": fioVerdict,
		"inc":        func(i int) int { return i + 1 },
	}).Parse(htmlTemplate)
	if err != nil {
		return fmt.Errorf("bench: html template: %w", err)
	}
	return t.Execute(w, page)
}

// htmlPage is what the template renders.
type htmlPage struct {
	Report *DiskReport
	Charts []chart
}

// chart is the geometry of one latency histogram, in SVG user units.
type chart struct {
	Name, Title, Measures string
	Samples               int64
	Width, Height         int
	Left, Bottom          float64 // the plot area's left and bottom edges
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
	X     float64
	Label string
}

type chartMark struct {
	X       float64
	Label   string
	Class   string // "pct" for percentiles, "pass"/"fail" for thresholds
	LabelY  float64
	AnchorR bool // label to the left of the line
}

// Chart layout.
const (
	chartW      = 760
	chartH      = 220
	chartLeft   = 48
	chartRight  = 16
	chartTop    = 28
	chartBottom = 36
)

// chartFor lays out r's latency histogram on a logarithmic time axis, with
// counts on a logarithmic scale too so a tail of a few samples stays
// visible. The axis stretches to include the threshold lines (lines, in
// milliseconds), so the gap between the figures and the line shows the
// headroom.
func chartFor(r Result, lines []float64) chart {
	c := chart{
		Name: r.Name, Title: r.Title, Measures: r.Measures, Samples: r.Latency.Samples,
		Width: chartW, Height: chartH, Left: chartLeft, Bottom: chartH - chartBottom, TickEnd: chartH - chartBottom + 4,
	}
	bins := r.Latency.Bins
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
	plotH := float64(chartH - chartTop - chartBottom)
	x := func(ns float64) float64 { return chartLeft + (math.Log10(ns)-lo)/(hi-lo)*plotW }

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
		h := math.Log10(float64(b.Count)+1) / top * plotH
		c.Bars = append(c.Bars, chartBar{
			X: x0 + 0.5, Y: c.Bottom - h, W: max(x1-x0-1, 1), H: h,
			Label: fmt.Sprintf("up to %s: %s samples", formatLatency(b.Upper), formatCount(float64(b.Count))),
		})
	}
	for d := math.Ceil(lo); d <= hi; d++ {
		c.Ticks = append(c.Ticks, chartTick{X: x(math.Pow(10, d)), Label: decadeLabel(int(d))})
	}
	l := r.Latency
	for i, m := range []struct {
		name string
		v    time.Duration
	}{{"p50", l.P50}, {"p99", l.P99}, {"p99.9", l.P999}} {
		mx := x(float64(m.v))
		// Labels near the right edge go to the left of their line.
		c.Marks = append(c.Marks, chartMark{X: mx, Label: m.name + " " + formatLatency(m.v), Class: "pct", LabelY: chartTop - 14 + float64(i)*11, AnchorR: mx > chartW-110})
	}
	for i, ms := range lines {
		if i == 1 && ms == lines[0] {
			break // no warning band: one line
		}
		class, name := "pass", "pass line"
		if i == 1 {
			class, name = "fail", "fail line"
		}
		c.Marks = append(c.Marks, chartMark{X: x(ms * 1e6), Label: fmt.Sprintf("%s %s ms", name, formatCount(ms)), Class: class, LabelY: c.Bottom - 6 - float64(i)*12, AnchorR: true})
	}
	return c
}

// decadeLabel names 10^d nanoseconds for an axis tick: 1µs, 10ms, 1s.
func decadeLabel(d int) string {
	units := []string{"ns", "µs", "ms", "s"}
	u := min(d/3, len(units)-1)
	return fmt.Sprintf("%.0f%s", math.Pow(10, float64(d-3*u)), units[u])
}

const htmlTemplate = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fjord bench disk: {{.Report.Dir}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f24; margin: 2rem auto; max-width: 66rem; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
.sub { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .25rem .6rem; text-align: left; vertical-align: top; border-bottom: 1px solid #eaeef2; }
th { font-weight: 600; background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 700; padding: .05rem .45rem; border-radius: .3rem; color: #fff; font-size: .8rem; }
.pass { background: #1a7f37; } .warn { background: #9a6700; } .fail { background: #cf222e; }
.src { color: #57606a; font-size: .85rem; }
figure { margin: 1rem 0 1.5rem; } figcaption { font-weight: 600; } figcaption span { font-weight: 400; color: #57606a; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #424a53; }
svg .bar { fill: #54aeff; } svg .axis { stroke: #8c959f; stroke-width: 1; }
svg line.mark-pct { stroke: #6639ba; stroke-dasharray: 3 2; } svg text.mark-pct { fill: #6639ba; }
svg line.mark-pass { stroke: #1a7f37; stroke-width: 2; } svg text.mark-pass { fill: #1a7f37; font-weight: 600; }
svg line.mark-fail { stroke: #cf222e; stroke-width: 2; } svg text.mark-fail { fill: #cf222e; font-weight: 600; }
ul.notes li { margin: .2rem 0; }
</style>
</head>
<body>
{{- $r := .Report}}
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

{{- if $r.Verdicts}}
<h2>Verdicts</h2>
<table>
<tr><th></th><th>check</th><th>where it stands</th><th>source</th></tr>
{{- range $r.Verdicts}}
<tr><td><span class="status {{.Status}}">{{upper (print .Status)}}</span></td><td>{{.Title}}</td><td>{{.Summary}}</td><td class="src"><a href="{{.SourceURL}}">{{.Source}}</a></td></tr>
{{- end}}
</table>
{{- end}}

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

<h2>Latency histograms</h2>
<p class="sub">Bars: samples per latency bin, ten bins per decade; both axes logarithmic so a tail of a few samples stays visible. Dashed: percentiles. Solid: the check's pass and fail lines.</p>
{{- range .Charts}}
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
<text x="{{printf "%.1f" .X}}" y="{{printf "%.0f" $bottom}}" dy="16" text-anchor="middle">{{.Label}}</text>
{{- end}}
{{- range .Marks}}
<line class="mark-{{.Class}}" x1="{{printf "%.1f" .X}}" y1="20" x2="{{printf "%.1f" .X}}" y2="{{$bottom}}"/>
<text class="mark-{{.Class}}" x="{{printf "%.1f" .X}}" y="{{printf "%.0f" .LabelY}}" dx="{{if .AnchorR}}-4{{else}}4{{end}}" text-anchor="{{if .AnchorR}}end{{else}}start{{end}}">{{.Label}}</text>
{{- end}}
</svg>
{{- end}}
</figure>
{{- end}}

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

{{- if or $r.Device.Notes $r.Notes}}
<h2>Notes</h2>
<ul class="notes">
{{- range $r.Device.Notes}}<li>{{.}}</li>{{end}}
{{- range $r.Notes}}<li>{{.}}</li>{{end}}
</ul>
{{- end}}
</body>
</html>
`
