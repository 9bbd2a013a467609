package ui

import (
	"html"
	"html/template"
	"strings"
)

// appRowsHTML writes the rows of the apps table. It is the one piece of
// the UI not written by html/template: with 1,000 apps, the template's
// per-value escaper calls (reflection, each) were half of the page's time.
// The rules that keep it safe are html/template's for these contexts:
// every value goes through html.EscapeString (which escapes < > & ' "),
// and values appear only as element text or inside double-quoted
// attributes that are not URLs, scripts or styles. The one URL, an app's
// link, is built from its name, which ParseApplication limits to a DNS
// label. TestAppRowsEscape holds it to that.
func appRowsHTML(rows []appRow) template.HTML {
	var b strings.Builder
	b.Grow(len(rows) * 700)
	e := html.EscapeString
	muted := func(s string) { b.WriteString(`<span class="muted">` + s + `</span>`) }
	for _, r := range rows {
		name := e(r.Name)
		b.WriteString("\n<tr data-app=\"" + name + "\">\n<td><a href=\"/ui/apps/" + name + "\">" + name + "</a>")
		if r.Labels != "" {
			b.WriteString(`<br><span class="src">` + e(r.Labels) + `</span>`)
		}
		b.WriteString("</td>\n<td>" + e(r.Repo) + "</td>\n<td>" + e(r.Cluster) + "</td>\n<td>")
		if r.TargetRevision != "" {
			b.WriteString(e(r.TargetRevision))
		} else {
			muted("—")
		}
		b.WriteString("</td>\n<td class=\"commit\">")
		if r.Synced != "" {
			b.WriteString("<code>" + e(r.Short) + "</code> " + e(r.Subject))
		} else {
			muted("none yet")
		}
		b.WriteString("</td>\n<td><span class=\"" + e(r.SyncClass) + "\">" + e(string(r.Sync)) + "</span></td>\n")
		b.WriteString("<td><span class=\"" + e(r.HealthClass) + "\">" + e(r.Health) + "</span></td>\n<td>")
		if r.Ago != "" {
			b.WriteString("<time datetime=\"" + e(r.Stamp) + "\" title=\"" + e(r.Clock) + "\">" + e(r.Ago) + "</time>")
		} else {
			muted("never")
		}
		b.WriteString("</td>\n<td class=\"num\">" + e(r.Took) + "</td>\n<td class=\"drift\">")
		if d := r.LastDrift; d != nil {
			b.WriteString(e(d.Object))
			if d.Manager != "" {
				b.WriteString(" by <strong>" + e(d.Manager) + "</strong>")
			}
			b.WriteString(" <time datetime=\"" + e(r.DriftStamp) + "\">" + e(r.DriftAgo) + "</time> (" + e(string(d.Action)) + ")")
		} else {
			muted("none")
		}
		b.WriteString("</td>\n</tr>")
	}
	return template.HTML(b.String())
}
