package storage

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// App buckets. The reconciler owns their meaning; storage only keeps them
// atomic. Sync history and drift events are nested logs keyed by app name
// then a big-endian sequence (see appendLog), newest found with one seek.
var (
	bucketApps      = []byte("apps")          // app name -> App
	bucketAppInv    = []byte("app_inventory") // app name -> AppInventory
	bucketAppSyncs  = []byte("app_syncs")     // app name -> seq -> AppSync
	bucketAppDrifts = []byte("app_drift")     // app name -> seq -> DriftEvent
)

// maxAppHistory and maxAppDrifts bound the per-app logs.
const (
	maxAppHistory = 100
	maxAppDrifts  = 200
)

// SyncStatus is an app's sync status, as Argo CD names it.
type SyncStatus string

// Sync statuses.
const (
	// Synced: the cluster holds what git declares at the synced commit.
	Synced SyncStatus = "Synced"
	// OutOfSync: git and the cluster differ (a manual policy, drift not
	// reverted, orphans kept, an object another app owns).
	OutOfSync SyncStatus = "OutOfSync"
	// SyncError: the last sync failed; AppStatus.Error says why.
	SyncError SyncStatus = "Error"
	// SyncUnknown: not synced yet.
	SyncUnknown SyncStatus = "Unknown"
)

// Trigger is what started a sync.
type Trigger string

// Triggers.
const (
	TriggerPush   Trigger = "push"   // a push to the app's repo
	TriggerMirror Trigger = "mirror" // a mirror sync moved the app's repo
	TriggerResync Trigger = "resync" // the periodic full reconcile
	TriggerManual Trigger = "manual" // fjord app sync
	TriggerRetry  Trigger = "retry"  // syncPolicy.retry after a failure
	TriggerDrift  Trigger = "drift"  // a change made outside git
	TriggerApply  Trigger = "apply"  // fjord app apply
	TriggerStart  Trigger = "start"  // fjord serve started
	TriggerParent Trigger = "parent" // the parent app (app of apps) synced it
)

// App is an application's configuration, as the user applied it, and its
// last known status.
type App struct {
	Name string `json:"name"`
	// Manifest is the Application document exactly as applied; the
	// reconciler parses it again on start, so a newer fjord reads what
	// the user wrote rather than an older fjord's interpretation.
	Manifest string `json:"manifest"`
	AppMeta
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Status  AppStatus `json:"status"`
}

// AppMeta is what fjord reads from an app's manifest to list, select and
// keep it without parsing it again.
type AppMeta struct {
	// Labels are the Application's metadata.labels (`app list -l`).
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are its metadata.annotations.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Project is its project ("default" when unset).
	Project string `json:"project,omitempty"`
	// Parent is the app whose render declares this one (app of apps);
	// empty for an app applied by hand.
	Parent string `json:"parent,omitempty"`
	// Cluster is the stored cluster its destination names; empty for
	// fjord's own (in-cluster). DeleteCluster refuses while one names it.
	Cluster string `json:"cluster,omitempty"`
	// HistoryLimit bounds the sync history (spec.revisionHistoryLimit);
	// 0 keeps the default of 100.
	HistoryLimit int `json:"historyLimit,omitempty"`
}

// AppStatus is what `fjord app list` shows.
type AppStatus struct {
	// Repo is the fjord repo the source resolved to.
	Repo string `json:"repo,omitempty"`
	// Revision is the commit the last sync attempt rendered.
	Revision string `json:"revision,omitempty"`
	// SyncedCommit is the last commit applied without error.
	SyncedCommit string `json:"syncedCommit,omitempty"`
	// Sources are where each source stands, for an app with several
	// sources or a chart from a Helm repository (Repo, Revision and
	// SyncedCommit are the first source's); nil for one git source.
	Sources []SourceRevision `json:"sources,omitempty"`
	// Sync is Synced, OutOfSync, Error or Unknown.
	Sync SyncStatus `json:"sync"`
	// Health is the kstatus of the app: Current, InProgress, Failed,
	// Terminating, NotFound or Unknown.
	Health string `json:"health"`
	// Error is why the last sync failed; empty after a success.
	Error       string    `json:"error,omitempty"`
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	LastSynced  time.Time `json:"lastSynced,omitzero"`
	// LastDrift is the newest drift event, if any.
	LastDrift *DriftEvent `json:"lastDrift,omitempty"`
	// Orphans are objects in the inventory that git no longer declares
	// and that were kept (prune off, or fjord.dev/prune: disabled).
	Orphans []string `json:"orphans,omitempty"`
	// Objects is the health of each object, sorted by ID.
	Objects []ObjectHealth `json:"objects,omitempty"`
	// Progress is where a running sync is; nil when none runs.
	Progress *SyncProgress `json:"progress,omitempty"`
	// Retry is the state of syncPolicy.retry after a failed sync; nil
	// when the last sync succeeded or the app does not retry.
	Retry *RetryState `json:"retry,omitempty"`
	// Refused is the commit the last sync attempt would not apply because
	// its signature did not satisfy the project's signatureKeys; nil once
	// a commit verifies (or the project asks for no signatures).
	Refused *RefusedCommit `json:"refused,omitempty"`
}

// RefusedCommit is a commit fjord did not apply, and why.
type RefusedCommit struct {
	Commit  string `json:"commit"`
	Project string `json:"project"`
	// Reason says what was wrong with its signature: not signed, signed
	// by a key fjord does not know, or by a key the project does not trust.
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// SourceRevision is where one source of an app stands.
type SourceRevision struct {
	// Source names it: its repoURL, and its path or chart.
	Source string `json:"source"`
	// Revision is the commit (or chart version) the last sync attempt
	// rendered; Synced the last one applied without error.
	Revision string `json:"revision,omitempty"`
	Synced   string `json:"synced,omitempty"`
}

// RetryState is where an app's retries of a failed sync stand.
type RetryState struct {
	// Attempt is the number of retries made so far for Revision.
	Attempt int `json:"attempt"`
	// Limit is syncPolicy.retry.limit; negative means no limit.
	Limit int `json:"limit"`
	// Revision is the commit whose sync is retried.
	Revision string `json:"revision,omitempty"`
	// Next is when the next retry runs; zero when the retries are spent.
	Next time.Time `json:"next,omitzero"`
}

// SyncProgress is the phase (PreSync, Sync, PostSync, SyncFail) and sync
// wave a running sync is in, and since when.
type SyncProgress struct {
	Phase string    `json:"phase"`
	Wave  int       `json:"wave"`
	Since time.Time `json:"since"`
}

// ObjectHealth is one managed object's kstatus.
type ObjectHealth struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// AppSync is one sync of an app, for `fjord app history`.
type AppSync struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	// Trigger is what started it.
	Trigger  Trigger `json:"trigger"`
	Revision string  `json:"revision,omitempty"`
	// Changes lists every object that was not unchanged.
	Changes []ObjectChange `json:"changes,omitempty"`
	// Unchanged counts objects that needed nothing.
	Unchanged int    `json:"unchanged"`
	Error     string `json:"error,omitempty"`
}

// ObjectChange is what a sync did to one object.
type ObjectChange struct {
	ID     string `json:"id"`
	Action string `json:"action"` // created, configured, deleted, skipped
	// Reason says why an object was skipped or failed.
	Reason string `json:"reason,omitempty"`
}

// DriftEvent is a change to a managed object made outside git.
type DriftEvent struct {
	Time   time.Time `json:"time"`
	Object string    `json:"object"`
	// Fields are the paths fjord owns that differed from git, such as
	// "spec.replicas"; empty for a deletion.
	Fields []string `json:"fields,omitempty"`
	// Manager is the field manager that made the change (from
	// managedFields), when it could be told.
	Manager string `json:"manager,omitempty"`
	// Deleted is true when the object was deleted rather than changed.
	Deleted bool `json:"deleted,omitempty"`
	// Action is what fjord did about it.
	Action DriftAction `json:"action"`
	// RevertedIn is how long after the watch saw the change fjord had
	// put it back (reverted or recreated); zero when not reverted or not
	// measured.
	RevertedIn time.Duration `json:"revertedIn,omitempty"`
}

// DriftAction is what fjord did about a drift.
type DriftAction string

// Drift actions.
const (
	// DriftReverted: the changed fields were put back as git has them.
	DriftReverted DriftAction = "reverted"
	// DriftRecreated: the deleted object was created again.
	DriftRecreated DriftAction = "recreated"
	// DriftReported: left as it is (selfHeal off); the app is OutOfSync.
	DriftReported DriftAction = "reported"
)

// AppInventory is what an app applied last: the set that prune compares
// the next render against.
type AppInventory struct {
	Commit  string           `json:"commit,omitempty"`
	Entries []InventoryEntry `json:"entries"`
}

// InventoryEntry is one applied object.
type InventoryEntry struct {
	// ID is group_kind_namespace_name, the form Flux uses.
	ID      string `json:"id"`
	Version string `json:"v"`
	// Hash is a digest of the rendered object as last applied.
	Hash string `json:"hash,omitempty"`
}

// PutApp creates or replaces an app's configuration, keeping its status
// and creation time if it exists.
func (s *Store) PutApp(name, manifest string, meta AppMeta) (App, error) {
	var a App
	err := s.update(func(tx *wtx) error {
		err := getJSON(tx, bucketApps, name, &a)
		now := time.Now().UTC()
		switch {
		case err == ErrNotFound:
			a = App{Name: name, Created: now}
		case err != nil:
			return err
		}
		a.Manifest, a.AppMeta, a.Updated = manifest, meta, now
		return tx.putJSON(bucketApps, name, a)
	})
	if err != nil {
		return App{}, fmt.Errorf("save app %q: %w", name, err)
	}
	return a, s.published(nil, Event{Kind: EventApp, Name: name})
}

// App returns an app, or ErrNotFound.
func (s *Store) App(name string) (App, error) {
	var a App
	if err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketApps, name, &a) }); err != nil {
		return App{}, fmt.Errorf("app %q: %w", name, err)
	}
	return a, nil
}

// Apps returns every app, sorted by name.
func (s *Store) Apps() ([]App, error) {
	var out []App
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketApps).ForEach(func(k, v []byte) error {
			var a App
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode app %q: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// SetAppStatus replaces an app's status, but for LastDrift (see
// RecordDrift).
func (s *Store) SetAppStatus(name string, st AppStatus) error {
	err := s.update(func(tx *wtx) error {
		var a App
		if err := getJSON(tx, bucketApps, name, &a); err != nil {
			return fmt.Errorf("app %q: %w", name, err)
		}
		st.LastDrift = a.Status.LastDrift
		a.Status = st
		return tx.putJSON(bucketApps, name, a)
	})
	return s.published(err, Event{Kind: EventApp, Name: name})
}

// UpdateAppStatus applies fn to an app's status in one transaction, so a
// partial update (health) never overwrites a concurrent sync's result.
func (s *Store) UpdateAppStatus(name string, fn func(*AppStatus)) error {
	err := s.update(func(tx *wtx) error {
		var a App
		if err := getJSON(tx, bucketApps, name, &a); err != nil {
			return fmt.Errorf("app %q: %w", name, err)
		}
		fn(&a.Status)
		return tx.putJSON(bucketApps, name, a)
	})
	return s.published(err, Event{Kind: EventApp, Name: name})
}

// RecordAppSync stores an app's status (but for LastDrift), its inventory (when inv is not
// nil) and appends the sync to its history, in one transaction, so the
// inventory never disagrees with the history that explains it.
func (s *Store) RecordAppSync(name string, st AppStatus, inv *AppInventory, rec AppSync) error {
	err := s.update(func(tx *wtx) error {
		var a App
		if err := getJSON(tx, bucketApps, name, &a); err != nil {
			return fmt.Errorf("app %q: %w", name, err)
		}
		// LastDrift belongs to RecordDrift: a drift recorded while the
		// sync ran must not be lost to the status the sync started from.
		st.LastDrift = a.Status.LastDrift
		a.Status = st
		if err := tx.putJSON(bucketApps, name, a); err != nil {
			return err
		}
		if inv != nil {
			if err := tx.putJSON(bucketAppInv, name, inv); err != nil {
				return err
			}
		}
		keep := maxAppHistory
		if a.HistoryLimit > 0 {
			keep = a.HistoryLimit
		}
		return appendLog(tx, bucketAppSyncs, name, rec, keep)
	})
	return s.published(err, Event{Kind: EventApp, Name: name})
}

// AppInventory returns what an app applied last; ok is false if nothing
// was recorded (a new app, or a data dir that lost it).
func (s *Store) AppInventory(name string) (inv AppInventory, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketAppInv, name, &inv) })
	if err == ErrNotFound {
		return AppInventory{}, false, nil
	}
	if err != nil {
		return AppInventory{}, false, fmt.Errorf("inventory of app %q: %w", name, err)
	}
	return inv, true, nil
}

// RecordDrift appends a drift event and makes it the app's LastDrift.
func (s *Store) RecordDrift(name string, ev DriftEvent) error {
	err := s.update(func(tx *wtx) error {
		var a App
		if err := getJSON(tx, bucketApps, name, &a); err != nil {
			return fmt.Errorf("app %q: %w", name, err)
		}
		a.Status.LastDrift = &ev
		if err := tx.putJSON(bucketApps, name, a); err != nil {
			return err
		}
		return appendLog(tx, bucketAppDrifts, name, ev, maxAppDrifts)
	})
	return s.published(err, Event{Kind: EventApp, Name: name})
}

// AppSyncs returns up to n recent syncs of an app, newest first.
func (s *Store) AppSyncs(name string, n int) ([]AppSync, error) {
	return readLogJSON[AppSync](s.db, bucketAppSyncs, name, n)
}

// AppDrifts returns up to n recent drift events of an app, newest first.
func (s *Store) AppDrifts(name string, n int) ([]DriftEvent, error) {
	return readLogJSON[DriftEvent](s.db, bucketAppDrifts, name, n)
}

// DeleteApp removes an app's configuration, status, inventory and logs.
func (s *Store) DeleteApp(name string) error {
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketApps).Get([]byte(name)) == nil {
			return fmt.Errorf("app %q: %w", name, ErrNotFound)
		}
		for _, b := range [][]byte{bucketAppSyncs, bucketAppDrifts} {
			if err := tx.dropNested(b, name); err != nil {
				return err
			}
		}
		if err := tx.del(bucketAppInv, []byte(name)); err != nil {
			return err
		}
		return tx.del(bucketApps, []byte(name))
	})
	return s.published(err, Event{Kind: EventAppDeleted, Name: name})
}

// AppsUsingRepo names the apps whose source last resolved to repo, sorted.
func (s *Store) AppsUsingRepo(repo string) ([]string, error) {
	apps, err := s.Apps()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range apps {
		if a.Status.Repo == repo {
			out = append(out, a.Name)
		}
	}
	return out, nil
}
