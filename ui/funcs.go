package ui

import (
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"time"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"short":   short,
	"ago":     ago,
	"rfc3339": stamp,
	"clock":   clock,
	"dur":     dur,
	"size":    size,
	"badge":   badge,
	"join":    strings.Join,
	"labels":  labels,
	"cluster": clusterName,
	"branch":  func(ref string) string { return strings.TrimPrefix(ref, "refs/heads/") },
}

// stamp is t for machines (a <time datetime>).
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// clock is t for people.
func clock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// short is a commit's 12-character abbreviation.
func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// ago says how long ago t was, the way people read a status page.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// dur rounds a duration for reading: ms below a second, else 0.1 s.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// size is a byte count in binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// badge is the class of a status badge: "status s-synced" and so on; the
// stylesheet colours each (see internal/style).
func badge(status any) string {
	s := strings.ToLower(fmt.Sprint(status))
	if s == "" {
		s = "unknown"
	}
	return "status s-" + s
}

// labels renders a label map as sorted k=v pairs.
func labels(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}
