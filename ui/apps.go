package ui

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// appRow is one line of the apps page.
//
// Its display strings are made in Go rather than by template functions:
// the page has 1,000 rows and more, and every function a template calls
// goes through reflection.
type appRow struct {
	Name           string
	Labels         string // k=v, sorted
	Repo           string
	Cluster        string // the destination's stored cluster; "in-cluster" for fjord's own
	TargetRevision string
	Synced         string // the synced commit
	Short          string // its abbreviation
	Subject        string // its subject
	Sync           storage.SyncStatus
	SyncClass      string
	Health         string
	HealthClass    string
	LastSynced     time.Time
	Ago            string // LastSynced, as "3m ago"
	Stamp          string // LastSynced in RFC 3339
	Clock          string // LastSynced for people
	Took           string // the last sync's duration
	LastDrift      *storage.DriftEvent
	DriftAgo       string
	DriftStamp     string
}

// appsFilter is the apps page's query: ?label=k=v,k2=v2&sync=S&health=H.
type appsFilter struct {
	Label  string
	Sync   string
	Health string
	labels map[string]string
}

// appsData is the apps page.
type appsData struct {
	Filter appsFilter
	Rows   []appRow
	// RowsHTML is Rows as table rows, see appRowsHTML.
	RowsHTML template.HTML
	Total    int // apps the viewer may see, before the filter
	Syncs    []string
	Healths  []string
	Problem  string // a filter that does not parse
	NoRec    bool   // the reconciler is off
}

// syncStatuses and healths are the filter choices, in the order people
// scan for trouble.
var (
	syncStatuses = []string{string(storage.Synced), string(storage.OutOfSync), string(storage.SyncError), string(storage.SyncUnknown)}
	healths      = []string{"Current", "InProgress", "Failed", "Terminating", "NotFound", "Unknown"}
)

func parseFilter(r *http.Request) (appsFilter, error) {
	q := r.URL.Query()
	f := appsFilter{Label: strings.TrimSpace(q.Get("label")), Sync: q.Get("sync"), Health: q.Get("health")}
	if f.Sync != "" && !slices.Contains(syncStatuses, f.Sync) {
		return f, fmt.Errorf("sync status %q: want one of %s", f.Sync, strings.Join(syncStatuses, ", "))
	}
	if f.Health != "" && !slices.Contains(healths, f.Health) {
		return f, fmt.Errorf("health %q: want one of %s", f.Health, strings.Join(healths, ", "))
	}
	if f.Label != "" {
		f.labels = map[string]string{}
		for _, kv := range strings.Split(f.Label, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return f, fmt.Errorf("label filter %q: write key=value, several separated by commas (team=web,env=prod)", f.Label)
			}
			f.labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return f, nil
}

func (f appsFilter) match(a storage.App) bool {
	if f.Sync != "" && string(a.Status.Sync) != f.Sync {
		return false
	}
	if f.Health != "" && a.Status.Health != f.Health {
		return false
	}
	for k, v := range f.labels {
		if got, ok := a.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (h *Handler) appsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d, err := h.appsData(r, v)
	if err != nil {
		h.log.Error("ui: apps page", "err", err)
		h.fail(w, r, v, http.StatusInternalServerError, "reading the apps failed; the server log says why")
		return
	}
	h.render(w, http.StatusOK, "apps", page{Title: "Apps", Nav: "apps", V: v, Live: "apps", Data: d})
}

// appsData reads every app the viewer may see and the filter's share of
// them, with their synced commit's subject and last sync's duration.
func (h *Handler) appsData(r *http.Request, v *viewer) (appsData, error) {
	d := appsData{Syncs: syncStatuses, Healths: healths, NoRec: h.apps == nil}
	f, ferr := parseFilter(r)
	d.Filter = f
	if ferr != nil {
		d.Problem = ferr.Error()
		f = appsFilter{}
	}
	apps, err := h.store.Apps()
	if err != nil {
		return d, err
	}
	last, err := h.store.LastAppSyncs()
	if err != nil {
		return d, err
	}
	want := map[string][]string{}
	for _, a := range apps {
		if !h.mayRead(v, a.Status.Repo) {
			continue
		}
		d.Total++
		if !f.match(a) {
			continue
		}
		st := a.Status
		row := appRow{
			Name: a.Name, Labels: strings.Join(labels(a.Labels), ", "), Repo: st.Repo, Cluster: clusterName(a.Cluster), Synced: st.SyncedCommit, Short: short(st.SyncedCommit),
			Sync: st.Sync, SyncClass: badge(st.Sync), Health: st.Health, LastSynced: st.LastSynced, LastDrift: st.LastDrift,
		}
		if row.Health == "" {
			row.Health = "Unknown"
		}
		row.HealthClass = badge(row.Health)
		if h.apps != nil {
			if o, ok := h.apps.Objects(a.Name); ok {
				row.TargetRevision = o.TargetRevision
			}
		}
		if rec, ok := last[a.Name]; ok {
			row.Took = dur(rec.Duration)
			if row.LastSynced.IsZero() {
				row.LastSynced = rec.Start.Add(rec.Duration)
			}
		}
		if !row.LastSynced.IsZero() {
			row.Ago, row.Stamp, row.Clock = ago(row.LastSynced), stamp(row.LastSynced), clock(row.LastSynced)
		}
		if ev := row.LastDrift; ev != nil {
			row.DriftAgo, row.DriftStamp = ago(ev.Time), stamp(ev.Time)
		}
		if st.Repo != "" && st.SyncedCommit != "" {
			want[st.Repo] = append(want[st.Repo], st.SyncedCommit)
		}
		d.Rows = append(d.Rows, row)
	}
	subjects := h.commits.Subjects(r.Context(), want)
	for i := range d.Rows {
		d.Rows[i].Subject = subjects[d.Rows[i].Repo+"\x00"+d.Rows[i].Synced]
	}
	d.RowsHTML = appRowsHTML(d.Rows)
	return d, nil
}

// clusterName is how the UI names an app's destination cluster: its
// stored name, or in-cluster (Argo CD's name) for fjord's own.
func clusterName(stored string) string {
	if stored == "" {
		return "in-cluster"
	}
	return stored
}
