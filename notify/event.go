package notify

import (
	"fmt"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"

	"github.com/fjordhq/fjord/storage"
)

// EventType names a kind of event a notifier may ask for (--on).
type EventType string

// Event types.
const (
	// SyncFailed: an app's sync failed. Sent once per commit and error:
	// a resync failing the same way sends nothing more.
	SyncFailed EventType = "sync-failed"
	// HealthDegraded: an app's health became Failed (kstatus; Argo CD
	// calls it Degraded). Sent again only after it recovered.
	HealthDegraded EventType = "health-degraded"
	// Deployed: an app applied a new commit.
	Deployed EventType = "deployed"
	// DriftReverted: fjord put back a change made outside git (or
	// recreated a deleted object). One per drift.
	DriftReverted EventType = "drift-reverted"
	// MirrorFailed: a mirror's sync failed. Sent once per error: retries
	// failing the same way send nothing more, a success resets it.
	MirrorFailed EventType = "mirror-failed"
)

// EventTypes returns every event type, in the order `fjord notify` lists
// them; a fresh slice each call, so no caller can change another's.
func EventTypes() []EventType {
	return []EventType{SyncFailed, HealthDegraded, Deployed, DriftReverted, MirrorFailed}
}

// ParseEventTypes reads a --on list (comma-separated).
func ParseEventTypes(list string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !knownType(f) {
			return nil, fmt.Errorf("unknown event %q: choose from %s", f, joinTypes())
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no events: give --on with some of %s", joinTypes())
	}
	return out, nil
}

func knownType(s string) bool {
	for _, t := range EventTypes() {
		if string(t) == s {
			return true
		}
	}
	return false
}

func joinTypes() string {
	var s []string
	for _, t := range EventTypes() {
		s = append(s, string(t))
	}
	return strings.Join(s, ",")
}

// Event is what a notifier is sent: the body of the json format.
type Event struct {
	Type EventType `json:"event"`
	// Message is one line for people.
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
	App     string    `json:"app,omitempty"`
	Project string    `json:"project,omitempty"`
	Repo    string    `json:"repo,omitempty"`
	Commit  string    `json:"commit,omitempty"`
	Health  string    `json:"health,omitempty"`
	Error   string    `json:"error,omitempty"`
	// Object, Fields and Manager describe a drift.
	Object  string   `json:"object,omitempty"`
	Fields  []string `json:"fields,omitempty"`
	Manager string   `json:"manager,omitempty"`
	Mirror  string   `json:"mirror,omitempty"`
}

// occurrence is one event that may be new: the subject it is about, the
// key that tells it from the subject's previous event ("" when the
// condition does not hold, which resets the subject), and the event.
type occurrence struct {
	subject string
	key     string
	ev      Event
}

func appSubject(app string, t EventType) string { return "app/" + app + "/" + string(t) }
func mirrorSubject(repo string) string          { return "mirror/" + repo + "/" + string(MirrorFailed) }

// appOccurrences are the events an app's state holds now, oldest drift
// first; drifts are keyed by their time, so each is sent once.
func appOccurrences(a storage.App, drifts []storage.DriftEvent) []occurrence {
	st := a.Status
	now := time.Now().UTC()
	base := Event{Time: now, App: a.Name, Project: a.Project, Repo: st.Repo}
	var out []occurrence

	failed := occurrence{subject: appSubject(a.Name, SyncFailed)}
	if st.Sync == storage.SyncError {
		failed.key = st.Revision + "\x00" + st.Error
		failed.ev = base
		failed.ev.Type, failed.ev.Commit, failed.ev.Error = SyncFailed, st.Revision, st.Error
		failed.ev.Message = fmt.Sprintf("app %s: sync of %s failed: %s", a.Name, short(st.Revision), firstLine(st.Error))
	}
	out = append(out, failed)

	deployed := occurrence{subject: appSubject(a.Name, Deployed), key: st.SyncedCommit}
	if st.SyncedCommit != "" {
		deployed.ev = base
		deployed.ev.Type, deployed.ev.Commit, deployed.ev.Health = Deployed, st.SyncedCommit, st.Health
		deployed.ev.Message = fmt.Sprintf("app %s: deployed %s", a.Name, short(st.SyncedCommit))
	}
	out = append(out, deployed)

	health := occurrence{subject: appSubject(a.Name, HealthDegraded)}
	// The app's health is kstatus' (the reconciler's health): Failed is
	// the one bad state (kstatus has no Degraded).
	if st.Health == string(status.FailedStatus) {
		health.key = st.Health
		health.ev = base
		health.ev.Type, health.ev.Commit, health.ev.Health = HealthDegraded, st.SyncedCommit, st.Health
		var bad []string
		for _, o := range st.Objects {
			if o.Status == st.Health {
				bad = append(bad, o.ID+": "+firstLine(o.Message))
			}
		}
		health.ev.Message = fmt.Sprintf("app %s: health %s", a.Name, st.Health)
		if len(bad) > 0 {
			health.ev.Message += ": " + strings.Join(bad, "; ")
		}
	}
	out = append(out, health)

	for i := len(drifts) - 1; i >= 0; i-- { // drifts come newest first
		d := drifts[i]
		if d.Action != storage.DriftReverted && d.Action != storage.DriftRecreated {
			continue
		}
		ev := base
		ev.Type, ev.Object, ev.Fields, ev.Manager, ev.Time = DriftReverted, d.Object, d.Fields, d.Manager, d.Time
		what := "changed " + strings.Join(d.Fields, ", ")
		if d.Deleted {
			what = "deleted"
		}
		ev.Message = fmt.Sprintf("app %s: %s %s by %s outside git; fjord %s it", a.Name, d.Object, what, orUnknown(d.Manager), d.Action)
		out = append(out, occurrence{subject: appSubject(a.Name, DriftReverted), key: driftKey(d), ev: ev})
	}
	return out
}

// driftKey orders drifts: RFC 3339 with fixed-width nanoseconds sorts as
// the times do.
func driftKey(d storage.DriftEvent) string {
	return d.Time.UTC().Format("2006-01-02T15:04:05.000000000Z") + " " + d.Object
}

func mirrorOccurrence(m storage.Mirror) occurrence {
	o := occurrence{subject: mirrorSubject(m.Repo), key: m.LastError}
	if m.LastError != "" {
		o.ev = Event{Type: MirrorFailed, Time: time.Now().UTC(), Mirror: m.Repo, Repo: m.Repo, Error: m.LastError,
			Message: fmt.Sprintf("mirror %s: sync from %s failed (%d in a row): %s", m.Repo, m.Upstream, m.Failures, firstLine(m.LastError))}
	}
	return o
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown manager"
	}
	return s
}
