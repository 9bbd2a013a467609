package ui

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// appData is one app's page.
type appData struct {
	App            storage.App
	TargetRevision string
	Subject        string // of the synced commit
	Waves          []waveGroup
	Orphans        []string
	Syncs          []storage.AppSync
	Drifts         []storage.DriftEvent
	Hooks          []hookRun
	NoRec          bool
	Flash          string // the result of a "sync now" just made
}

// waveGroup is the objects of one sync wave, grouped by kind.
type waveGroup struct {
	Wave  int
	Known bool // false: the reconciler does not know the waves (off, or not synced since start)
	Kinds []kindGroup
}

type kindGroup struct {
	Kind    string
	Objects []objectRow
}

// objectRow is one managed object.
type objectRow struct {
	ID      string // Kind.group/ns/name, as ObjectHealth and drift events name it
	Name    string // ns/name
	Health  string
	Message string
	Sync    storage.SyncStatus
	Why     string // why it is not Synced
}

// hookRun is a hook object a sync created.
type hookRun struct {
	Phase    string
	Object   string
	Sync     time.Time
	Revision string
	Failed   bool // the sync it ran in failed
	Error    string
}

// maxHistory is how much history the app page shows.
const (
	maxHistory = 30
	maxDrifts  = 50
)

func (h *Handler) appPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	a, ok := h.visibleApp(w, r, v)
	if !ok {
		return
	}
	d, err := h.appData(r.Context(), a)
	if err != nil {
		h.log.Error("ui: app page", "app", a.Name, "err", err)
		h.fail(w, r, v, http.StatusInternalServerError, "reading the app failed; the server log says why")
		return
	}
	d.Flash = r.URL.Query().Get("synced")
	h.render(w, http.StatusOK, "app", page{Title: "App " + a.Name, Nav: "apps", V: v, Live: "app:" + a.Name, Data: d})
}

// visibleApp reads the app of the request's {name}; an app the viewer
// may not read is answered exactly as one that does not exist.
func (h *Handler) visibleApp(w http.ResponseWriter, r *http.Request, v *viewer) (storage.App, bool) {
	name := r.PathValue("name")
	a, err := h.store.App(name)
	if err == nil && h.mayRead(v, a.Status.Repo) {
		return a, true
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		h.log.Error("ui: read app", "app", name, "err", err)
	}
	h.fail(w, r, v, http.StatusNotFound, "no app "+name+" that you may see")
	return storage.App{}, false
}

func (h *Handler) appData(ctx context.Context, a storage.App) (appData, error) {
	d := appData{App: a, NoRec: h.apps == nil, Orphans: a.Status.Orphans}
	var objs AppObjects
	if h.apps != nil {
		objs, _ = h.apps.Objects(a.Name)
		d.TargetRevision = objs.TargetRevision
	}
	var err error
	if d.Syncs, err = h.store.AppSyncs(a.Name, maxHistory); err != nil {
		return d, err
	}
	if d.Drifts, err = h.store.AppDrifts(a.Name, maxDrifts); err != nil {
		return d, err
	}
	if a.Status.Repo != "" && a.Status.SyncedCommit != "" {
		d.Subject = h.commits.Subjects(ctx, map[string][]string{a.Status.Repo: {a.Status.SyncedCommit}})[a.Status.Repo+"\x00"+a.Status.SyncedCommit]
	}
	d.Waves = objectTree(a, objs.Waves, d.Drifts)
	d.Hooks = hooksOf(d.Syncs)
	return d, nil
}

// objectTree groups an app's objects by sync wave, then kind. The objects
// are those of the app's health list (its inventory), with the orphans
// kept from earlier commits.
//
// An object's sync state: OutOfSync when it is an orphan, or when drift
// on it was reported (selfHeal off) after the last successful sync, or
// when the app's last sync rendered a commit other than the synced one
// (a failed sync of a newer commit); Synced otherwise.
func objectTree(a storage.App, waves map[string]int, drifts []storage.DriftEvent) []waveGroup {
	st := a.Status
	reported := map[string]bool{}
	for _, ev := range drifts {
		if ev.Action == storage.DriftReported && ev.Time.After(st.LastSynced) {
			reported[ev.Object] = true
		}
	}
	rows := map[int]map[string][]objectRow{}
	add := func(id string, row objectRow) {
		w, known := waves[id]
		if !known {
			w = 0
		}
		kind := kindOf(id)
		if rows[w] == nil {
			rows[w] = map[string][]objectRow{}
		}
		rows[w][kind] = append(rows[w][kind], row)
	}
	for _, o := range st.Objects {
		row := objectRow{ID: o.ID, Name: nameOf(o.ID), Health: o.Status, Message: o.Message, Sync: storage.Synced}
		switch {
		case reported[o.ID]:
			row.Sync, row.Why = storage.OutOfSync, "changed outside git (selfHeal is off)"
		case st.Revision != "" && st.SyncedCommit != "" && st.Revision != st.SyncedCommit:
			row.Sync, row.Why = storage.OutOfSync, "commit "+short(st.Revision)+" is not applied: its sync failed"
		case st.SyncedCommit == "":
			row.Sync = storage.SyncUnknown
		}
		add(o.ID, row)
	}
	for _, id := range st.Orphans {
		add(id, objectRow{ID: id, Name: nameOf(id), Health: "Unknown", Sync: storage.OutOfSync, Why: "git no longer declares it; kept (prune off)"})
	}
	var out []waveGroup
	for w, kinds := range rows {
		g := waveGroup{Wave: w, Known: waves != nil}
		for k, objs := range kinds {
			sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
			g.Kinds = append(g.Kinds, kindGroup{Kind: k, Objects: objs})
		}
		sort.Slice(g.Kinds, func(i, j int) bool { return g.Kinds[i].Kind < g.Kinds[j].Kind })
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Wave < out[j].Wave })
	return out
}

// kindOf and nameOf split an object ID "Kind.group/ns/name" (or
// "Kind.group/name" for a cluster-scoped object).
func kindOf(id string) string {
	k, _, _ := strings.Cut(id, "/")
	return k
}

func nameOf(id string) string {
	_, n, _ := strings.Cut(id, "/")
	return n
}

// hooksOf lists the hook objects the syncs created (the reconciler records
// each as a change whose reason is "PHASE hook"), newest sync first.
func hooksOf(syncs []storage.AppSync) []hookRun {
	var out []hookRun
	for _, s := range syncs {
		for _, c := range s.Changes {
			phase, ok := strings.CutSuffix(c.Reason, " hook")
			if !ok {
				continue
			}
			out = append(out, hookRun{Phase: phase, Object: c.ID, Sync: s.Start, Revision: s.Revision, Failed: s.Error != "", Error: s.Error})
		}
	}
	return out
}

func (h *Handler) diffPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	a, ok := h.visibleApp(w, r, v)
	if !ok {
		return
	}
	type diffData struct {
		App   storage.App
		Lines []diffLine
		Error string
		NoRec bool
		Empty bool
	}
	d := diffData{App: a, NoRec: h.apps == nil}
	if h.apps != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		diff, err := h.apps.Diff(ctx, a.Name)
		cancel()
		if err != nil {
			d.Error = err.Error()
		}
		d.Lines = diffLines(diff)
		d.Empty = err == nil && diff == ""
	}
	h.render(w, http.StatusOK, "diff", page{Title: "Diff of " + a.Name, Nav: "apps", V: v, Data: d})
}

// diffLine is one line of a unified diff with its class for colour.
type diffLine struct {
	Class string // add, del, hunk or ""
	Text  string
}

func diffLines(diff string) []diffLine {
	if diff == "" {
		return nil
	}
	var out []diffLine
	for _, l := range strings.Split(strings.TrimSuffix(diff, "\n"), "\n") {
		c := ""
		switch {
		case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
			c = "hunk"
		case strings.HasPrefix(l, "@@"):
			c = "hunk"
		case strings.HasPrefix(l, "+"):
			c = "add"
		case strings.HasPrefix(l, "-"):
			c = "del"
		}
		out = append(out, diffLine{Class: c, Text: l})
	}
	return out
}

// syncApp is the UI's one write: an admin's "sync now". The sync runs to
// its end even if the browser goes away (a sync cut off half-way would
// leave the cluster between two commits); the page reloads to show it.
func (h *Handler) syncApp(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !h.checkCSRF(w, r, v) {
		return
	}
	a, ok := h.visibleApp(w, r, v)
	if !ok {
		return
	}
	if !v.Admin() {
		h.fail(w, r, v, http.StatusForbidden, "only an admin may sync an app")
		return
	}
	// Only the primary writes: a sync on a replica would record a status
	// its store refuses, and a second member syncing races the primary.
	if h.gate != nil {
		if err := h.gate(); err != nil {
			h.fail(w, r, v, http.StatusServiceUnavailable, err.Error()+"; open this page on the primary to sync")
			return
		}
	}
	if h.apps == nil {
		h.fail(w, r, v, http.StatusServiceUnavailable, "the reconciler is off (no cluster configured): start fjord serve with --kubeconfig FILE")
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 15*time.Minute)
	defer cancel()
	rec, err := h.apps.Sync(ctx, a.Name)
	result := "ok"
	if err != nil {
		result = "failed"
		h.log.Warn("ui: sync now failed", "app", a.Name, "user", v.User.Name, "err", err)
	} else {
		h.log.Info("ui: sync now", "app", a.Name, "user", v.User.Name, "revision", rec.Revision)
	}
	http.Redirect(w, r, Prefix+"apps/"+a.Name+"?synced="+result, http.StatusSeeOther)
}
