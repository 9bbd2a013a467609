package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteText writes rep as a table for people: the device, one line per
// workload, the verdicts with their headroom and sources, the fio comparison
// and the notes.
func WriteText(w io.Writer, rep *DiskReport) error {
	p := &printer{w: w}
	p.f("fjord bench disk: %s (host %s, kernel %s, %s)\n", rep.Dir, orUnknown(rep.Host), orUnknown(rep.Device.Kernel), rep.Started.Format(time.RFC3339))
	p.f("each workload: %s warmup, then %s measured\n\n", formatLatency(rep.Warmup), formatLatency(rep.Duration))
	writeDevice(p, rep.Device)

	p.f("\n")
	t := table{head: []string{"WORKLOAD", "MEASURES", "SAMPLES", "P50", "P90", "P99", "P99.9", "MAX", "IOPS", "MB/s"}, left: 2}
	for _, r := range rep.Workloads {
		l := r.Latency
		t.add(r.Name, r.Measures, formatCount(float64(l.Samples)),
			formatLatency(l.P50), formatLatency(l.P90), formatLatency(l.P99), formatLatency(l.P999), formatLatency(l.Max),
			formatCount(r.IOPS), fmt.Sprintf("%.1f", r.MBps))
	}
	t.write(p)
	for _, r := range rep.Workloads {
		if n := r.Neighbour; n != nil {
			p.f("  %s: %d readers at %s IOPS and %d writers at %s IOPS alongside the WAL", r.Name,
				n.Readers, formatCount(n.ReadIOPS), n.Writers, formatCount(n.WriteIOPS))
			if n.BaselineP99 > 0 {
				p.f("; p99 %s on a quiet disk, %s with the neighbour (%.1f× the quiet p99)",
					formatLatency(n.BaselineP99), formatLatency(r.Latency.P99), n.P99Rise)
			}
			p.f("\n")
		}
	}

	writeVerdicts(p, rep.Verdicts)

	if c := rep.Fio; c != nil {
		p.f("\nfio comparison, same job on the same filesystem, fdatasync latency:\n  %s (%s)\n", c.Command, orUnknown(c.Version))
		t := table{head: []string{"", "FIO", "FJORD", "DIFF"}, left: 1, indent: "  "}
		row := func(name string, a, b time.Duration) {
			t.add(name, formatLatency(a), formatLatency(b), fmt.Sprintf("%+.1f%%", 100*relDiff(b, a)))
		}
		t.add("samples", formatCount(float64(c.Fio.Samples)), formatCount(float64(c.Fjord.Samples)), "")
		row("p50", c.Fio.P50, c.Fjord.P50)
		row("p90", c.Fio.P90, c.Fjord.P90)
		row("p99", c.Fio.P99, c.Fjord.P99)
		row("p99.9", c.Fio.P999, c.Fjord.P999)
		row("max", c.Fio.Max, c.Fjord.Max)
		t.add("IOPS", formatCount(c.FioIOPS), formatCount(c.FjordIOPS), fmt.Sprintf("%+.1f%%", 100*(c.FjordIOPS-c.FioIOPS)/c.FioIOPS))
		t.write(p)
		p.f("  by round (p50 / p99):\n")
		for i, r := range c.Rounds {
			p.f("    %d  fio %s / %s   fjord %s / %s\n", i+1, formatLatency(r.Fio.P50), formatLatency(r.Fio.P99), formatLatency(r.Fjord.P50), formatLatency(r.Fjord.P99))
		}
		p.f("  %s\n", fioVerdict(c))
	}

	notes := append(append([]string{}, rep.Device.Notes...), rep.Notes...)
	if len(notes) > 0 {
		p.f("\nnotes:\n")
		for _, n := range notes {
			p.f("  - %s\n", n)
		}
	}
	return p.err
}

// fioVerdict says whether fjord and fio agree and, when they do not, whether
// fjord's figures lie inside the range fio's own rounds span. It judges the
// very figures it prints: the medians of both sides and fio's lowest and
// highest round, with no hidden margin.
func fioVerdict(c *FioComparison) string {
	figure := func(name string, fjord, fio time.Duration) string {
		return fmt.Sprintf("%s %s against fio's %s (%+.1f%%)", name, formatLatency(fjord), formatLatency(fio), 100*relDiff(fjord, fio))
	}
	both := figure("p50", c.Fjord.P50, c.Fio.P50) + ", " + figure("p99", c.Fjord.P99, c.Fio.P99)
	if c.Agree {
		return fmt.Sprintf("fjord's p50 and p99 are within ±%.0f%% of fio's: %s", 100*fioAgreement, both)
	}
	var inside, outside []string
	for _, f := range []struct {
		name string
		pick func(Latency) time.Duration
	}{{"p50", func(l Latency) time.Duration { return l.P50 }}, {"p99", func(l Latency) time.Duration { return l.P99 }}} {
		// Compared as printed, to three significant digits, so the
		// words never contradict the figures beside them.
		lo, hi := fioRoundRange(c.Rounds, f.pick)
		lo, hi, v := sig3Duration(lo), sig3Duration(hi), sig3Duration(f.pick(c.Fjord))
		span := fmt.Sprintf("%s to %s", formatLatency(lo), formatLatency(hi))
		switch {
		case v < lo:
			outside = append(outside, fmt.Sprintf("fjord's %s %s is below fio's %s", f.name, formatLatency(v), span))
		case v > hi:
			outside = append(outside, fmt.Sprintf("fjord's %s %s is above fio's %s", f.name, formatLatency(v), span))
		default:
			inside = append(inside, fmt.Sprintf("fjord's %s %s is inside fio's %s", f.name, formatLatency(v), span))
		}
	}
	msg := fmt.Sprintf("fjord and fio differ by more than %.0f%% (%s)", 100*fioAgreement, both)
	if len(outside) == 0 {
		return msg + ", but each of fjord's figures lies inside the range fio itself spans from round to round (" +
			strings.Join(inside, "; ") + "): the disk moved, not the tools; run again on a quieter machine"
	}
	return msg + ", beyond the range fio itself spans from round to round (" +
		strings.Join(append(outside, inside...), "; ") + "): run again; if it persists, report it"
}

// fioRoundRange returns the lowest and highest of one of fio's figures over
// the rounds.
func fioRoundRange(rounds []FioRound, pick func(Latency) time.Duration) (lo, hi time.Duration) {
	for i, r := range rounds {
		v := pick(r.Fio)
		if i == 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	return lo, hi
}

// writeVerdicts writes the verdict table and the source of each check.
func writeVerdicts(p *printer, vs []Verdict) {
	if len(vs) == 0 {
		return
	}
	p.f("\n")
	t := table{head: []string{"VERDICT", "CHECK", "WHERE IT STANDS"}, left: 3}
	for _, v := range vs {
		t.add(strings.ToUpper(string(v.Status)), v.Title, v.Summary)
	}
	t.write(p)
	p.f("\nsources:\n")
	for _, v := range vs {
		p.f("  %s: %s\n", v.Check, v.Source)
		if v.SourceURL != "" {
			p.f("    %s\n", v.SourceURL)
		}
	}
}

// writeDevice writes the device block of the text report.
func writeDevice(p *printer, d Device) {
	fs := orUnknown(d.Filesystem)
	if d.Source != "" {
		fs += " on " + d.Source
	}
	p.f("  filesystem  %s, mounted at %s (%s; %s)\n", fs, orUnknown(d.MountPoint), orUnknown(d.MountOptions), orUnknown(d.SuperOptions))
	var dev []string
	if d.BlockDevice != "" {
		name := d.BlockDevice
		if d.Partition != "" {
			name += ", partition " + d.Partition
		}
		if len(d.Underlying) > 0 {
			name += " over " + strings.Join(d.Underlying, ", ")
		}
		dev = append(dev, name, "model "+orUnknown(d.Model))
		switch {
		case d.Rotational == nil:
			dev = append(dev, "rotational: unknown")
		case *d.Rotational:
			dev = append(dev, "rotational")
		default:
			dev = append(dev, "non-rotational")
		}
		dev = append(dev, "write cache: "+orUnknown(d.WriteCache), "scheduler "+orUnknown(d.Scheduler))
		if d.LogicalBlockSize > 0 {
			dev = append(dev, fmt.Sprintf("%d-byte sectors", d.LogicalBlockSize))
		}
	} else {
		dev = append(dev, "none found")
	}
	p.f("  device      %s\n", strings.Join(dev, ", "))
	p.f("  space       %s free of %s\n", formatBytes(int64(d.FreeBytes)), formatBytes(int64(d.TotalBytes)))
	limits := "none"
	if len(d.IOLimits) > 0 {
		limits = strings.Join(d.IOLimits, "\n              ")
	}
	p.f("  io limits   %s\n", limits)
}

// table lays out rows in columns two spaces apart: the first left columns
// aligned left, the numbers after them aligned right.
type table struct {
	head   []string
	left   int
	indent string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(p *printer) {
	rows := append([][]string{t.head}, t.rows...)
	width := make([]int, len(t.head))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		b.WriteString(t.indent)
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < t.left {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		p.f("%s\n", strings.TrimRight(b.String(), " "))
	}
}

// printer writes formatted text and keeps the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.w.Write(b)
	p.err = err
	return n, err
}

func (p *printer) f(format string, args ...any) { fmt.Fprintf(p, format, args...) }

// orUnknown returns s, or "unknown" when it is empty.
func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// formatLatency formats d with three significant digits in the unit that
// suits it: 41.2µs, 2.41ms, 1.20s.
func formatLatency(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	v, unit := float64(d), "ns"
	switch {
	case d >= time.Second:
		v, unit = d.Seconds(), "s"
	case d >= time.Millisecond:
		v, unit = v/1e6, "ms"
	case d >= time.Microsecond:
		v, unit = v/1e3, "µs"
	}
	return sig3(v) + unit
}

// sig3Duration rounds d to the three significant digits formatLatency
// shows.
func sig3Duration(d time.Duration) time.Duration {
	if d < 1000 {
		return d
	}
	unit := math.Pow(10, math.Floor(math.Log10(float64(d)))-2)
	return time.Duration(math.Round(float64(d)/unit) * unit)
}

// formatMillis formats a value in milliseconds with three significant
// digits.
func formatMillis(ms float64) string { return sig3(ms) + " ms" }

// sig3 formats v with three significant digits.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// formatCount formats v rounded to a whole number with thousands
// separators: 12,345.
func formatCount(v float64) string {
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// formatBytes formats n in binary units: 512 B, 22.0 MiB, 1.00 GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return sig3(v) + " " + []string{"", "KiB", "MiB", "GiB", "TiB", "PiB"}[i]
}

// WriteGitText writes rep as a table for people: the repository's size, what
// every figure includes, one line per workload, the verdicts and the notes.
func WriteGitText(w io.Writer, rep *GitReport) error {
	p := &printer{w: w}
	p.f("fjord bench git: %s (%s, %s)\n", rep.URL, orUnknown(rep.GitVersion), rep.Started.Format(time.RFC3339))
	p.f("%s\n", repoLine(rep))
	p.f("%d client(s) at once; each workload: %s warmup, then %s measured\n\n",
		rep.Concurrency, formatLatency(rep.Warmup), formatLatency(rep.Duration))
	t := table{head: []string{"WORKLOAD", "OPS", "ERRORS", "P50", "P90", "P99", "MAX", "OPS/S", "MB/s"}, left: 1}
	for _, r := range rep.Workloads {
		l := r.Latency
		t.add(r.Name, formatCount(float64(r.Ops)), formatCount(float64(r.Errors)),
			formatLatency(l.P50), formatLatency(l.P90), formatLatency(l.P99), formatLatency(l.Max),
			fmt.Sprintf("%.1f", r.OpsPerSec), fmt.Sprintf("%.1f", r.MBps))
	}
	t.write(p)
	p.f("\n%s\n", wrap(includesLine(rep), 100, "  "))
	writeVerdicts(p, rep.Verdicts)
	p.f("\ncommands:\n")
	for _, r := range rep.Workloads {
		p.f("  %s: %s\n", r.Name, r.Command)
	}
	if len(rep.Notes) > 0 {
		p.f("\nnotes:\n")
		for _, n := range rep.Notes {
			p.f("  - %s\n", n)
		}
	}
	return p.err
}

// repoLine states the repository measured and its size.
func repoLine(rep *GitReport) string {
	z := rep.Repo
	return fmt.Sprintf("repository: default branch %s at %s; %s commits, %s refs, %s objects, %s as a full clone receives them",
		rep.Branch, rep.Head, formatCount(float64(z.Commits)), formatCount(float64(z.Refs)), formatCount(float64(z.Objects)), formatBytes(z.Bytes))
}

// includesLine says what every figure includes, so that nobody compares it
// with the in-process "anything new?" figure.
func includesLine(rep *GitReport) string {
	clients := "git"
	if isSSH(rep.URL) {
		clients = "git and ssh"
	}
	return fmt.Sprintf("Each figure is one git command from start to exit: it includes starting the %s client processes "+
		"(%s at the median here, with no server involved) and a new connection per operation. "+
		"The \"anything new?\" figure of make bench (goal p99 < 1 ms) is one request on an SSH connection "+
		"that is already open, answered in-process: it pays none of that, so the two are not comparable.",
		clients, formatLatency(rep.ClientStart))
}

// wrap breaks s into lines of at most width runes, each starting with
// indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(s) {
		if line != indent && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	b.WriteString(line)
	return b.String()
}
