package notify_test

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fjordhq/fjord/notify"
	"github.com/fjordhq/fjord/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// receiver is a real HTTP server standing in for Slack or a chat bridge:
// it records every POST and fails the next fail of them with 503.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []post
	fail int
	cond *sync.Cond
}

type post struct {
	event, delivery, signature string
	body                       []byte
	code                       int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.cond = sync.NewCond(&r.mu)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		p := post{event: req.Header.Get(notify.HeaderEvent), delivery: req.Header.Get(notify.HeaderDelivery),
			signature: req.Header.Get(notify.HeaderSignature), body: b, code: http.StatusOK}
		if r.fail > 0 {
			r.fail--
			p.code = http.StatusServiceUnavailable
		}
		r.got = append(r.got, p)
		r.cond.Broadcast()
		w.WriteHeader(p.code)
	}))
	t.Cleanup(r.Close)
	return r
}

// wait returns the posts once there are n, failing after a generous bound.
func (r *receiver) wait(t *testing.T, n int) []post {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	go func() {
		time.Sleep(time.Until(deadline))
		r.cond.Broadcast()
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.got) < n && time.Now().Before(deadline) {
		r.cond.Wait()
	}
	if len(r.got) < n {
		t.Fatalf("receiver got %d POSTs, want %d: %+v", len(r.got), n, r.got)
	}
	return append([]post(nil), r.got...)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func openStore(t *testing.T, dir string) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts a Manager whose retries wait retryBase, doubling, at most
// four times that.
func run(t *testing.T, store *storage.Store, retryBase time.Duration) (*notify.Manager, func()) {
	t.Helper()
	return runConfig(t, notify.Config{Store: store, RetryBase: retryBase, RetryMax: 4 * retryBase, MaxAttempts: 4})
}

// runConfig starts a Manager of cfg; the returned func stops it.
func runConfig(t *testing.T, cfg notify.Config) (*notify.Manager, func()) {
	t.Helper()
	m, err := notify.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return m, stop
}

func event(t *testing.T, p post) notify.Event {
	t.Helper()
	var ev notify.Event
	if err := json.Unmarshal(p.body, &ev); err != nil {
		t.Fatalf("body %s: %v", p.body, err)
	}
	return ev
}

// TestNotifications: one POST per event with a valid signature, nothing
// for a resync that finds the same state, retries until the receiver
// recovers (every attempt recorded with its code), --app and --on filters,
// and a new notifier is not sent the past.
func TestNotifications(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir)
	defer func() { store.Close() }()
	rcv := newReceiver(t)
	other := newReceiver(t)
	if _, err := store.PutApp("web", "kind: Application", storage.AppMeta{Project: "default"}); err != nil {
		t.Fatal(err)
	}
	m, stop := run(t, store, 10*time.Millisecond)
	const secret = "s3cret-for-hmac"
	if _, err := m.Add(context.Background(), storage.Notifier{Name: "chat", URL: rcv.URL + "/hook", Secret: secret,
		On: []string{"sync-failed", "deployed", "drift-reverted", "mirror-failed", "health-degraded"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(context.Background(), storage.Notifier{Name: "others", URL: other.URL, Format: notify.FormatSlack,
		On: []string{"sync-failed", "deployed"}, AppGlob: "other-*"}); err != nil {
		t.Fatal(err)
	}
	setStatus := func(st storage.AppStatus) {
		t.Helper()
		st.LastAttempt = time.Now().UTC()
		if err := store.SetAppStatus("web", st); err != nil {
			t.Fatal(err)
		}
	}
	deliveries := func(name string) []storage.Delivery {
		t.Helper()
		ds, err := store.Deliveries(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}

	// A failed sync: one POST, signed.
	setStatus(storage.AppStatus{Sync: storage.SyncError, Revision: "c1c1c1c1c1c1c1c1", Error: "apply Deployment web: boom", Health: "Unknown"})
	got := rcv.wait(t, 1)
	ev := event(t, got[0])
	if got[0].event != "sync-failed" || ev.Type != notify.SyncFailed || ev.App != "web" || ev.Commit != "c1c1c1c1c1c1c1c1" || !strings.Contains(ev.Message, "boom") {
		t.Fatalf("sync-failed POST: %+v %+v", got[0], ev)
	}
	if want := notify.Sign([]byte(secret), got[0].body); !hmac.Equal([]byte(got[0].signature), []byte(want)) {
		t.Fatalf("signature %q, want %q", got[0].signature, want)
	}
	if notify.Sign([]byte("wrong"), got[0].body) == got[0].signature {
		t.Fatal("a wrong secret gives the same signature")
	}

	// The resync fails the same way: nothing. Then the receiver fails
	// twice and the next deploy is retried until it answers 200.
	setStatus(storage.AppStatus{Sync: storage.SyncError, Revision: "c1c1c1c1c1c1c1c1", Error: "apply Deployment web: boom", Health: "Unknown"})
	rcv.mu.Lock()
	rcv.fail = 2
	rcv.mu.Unlock()
	setStatus(storage.AppStatus{Sync: storage.Synced, Revision: "c2c2c2c2c2c2c2c2", SyncedCommit: "c2c2c2c2c2c2c2c2", Health: "Current"})
	got = rcv.wait(t, 4)
	for i, p := range got[1:] {
		if p.event != "deployed" || p.delivery != got[1].delivery {
			t.Fatalf("post %d: %+v, want the deploy retried under one delivery ID", i+1, p)
		}
	}
	if ev := event(t, got[3]); ev.Commit != "c2c2c2c2c2c2c2c2" {
		t.Errorf("deployed: %+v", ev)
	}
	eventually(t, "the deploy recorded as delivered", func() (bool, string) {
		ds := deliveries("chat")
		return len(ds) == 2 && ds[0].State == storage.DeliveryDelivered, fmt.Sprintf("%+v", ds)
	})
	ds := deliveries("chat")
	if codes := attemptCodes(ds[0]); codes != "503,503,200" {
		t.Errorf("deploy attempts %s, want 503,503,200", codes)
	}
	if codes := attemptCodes(ds[1]); codes != "200" || ds[1].Event != "sync-failed" {
		t.Errorf("first delivery %+v", ds[1])
	}

	// A reverted drift, a resync with nothing new, a failing mirror
	// (twice with the same error: one POST).
	if err := store.RecordDrift("web", storage.DriftEvent{Time: time.Now().UTC(), Object: "apps/Deployment:prod/web", Fields: []string{"spec.replicas"}, Manager: "kubectl-scale", Action: storage.DriftReverted}); err != nil {
		t.Fatal(err)
	}
	setStatus(storage.AppStatus{Sync: storage.Synced, Revision: "c2c2c2c2c2c2c2c2", SyncedCommit: "c2c2c2c2c2c2c2c2", Health: "Current"})
	if _, err := store.CreateRepo(context.Background(), storage.Repo{Name: "up"}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateMirror(storage.Mirror{Repo: "up", Upstream: "https://example.com/up.git"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := store.RecordMirrorSync("up", storage.MirrorSync{Error: "fetch: connection refused"}, func(mi *storage.Mirror) {
			mi.LastError, mi.Failures = "fetch: connection refused", i+1
		}); err != nil {
			t.Fatal(err)
		}
	}
	got = rcv.wait(t, 6)
	byType := map[notify.EventType]notify.Event{}
	for _, p := range got[4:6] { // two deliveries in flight: either may land first
		ev := event(t, p)
		byType[ev.Type] = ev
	}
	if ev := byType[notify.DriftReverted]; ev.Manager != "kubectl-scale" || ev.Object != "apps/Deployment:prod/web" {
		t.Errorf("drift POST: %+v", ev)
	}
	if ev := byType[notify.MirrorFailed]; ev.Mirror != "up" || !strings.Contains(ev.Message, "connection refused") {
		t.Errorf("mirror POST: %+v", ev)
	}
	// The mirror's last record is the barrier: every event before it has
	// been looked at, so the count is final for them.
	eventually(t, "four deliveries recorded", func() (bool, string) {
		ds := deliveries("chat")
		return len(ds) == 4 && ds[0].State == storage.DeliveryDelivered, fmt.Sprintf("%+v", ds)
	})
	if other.count() != 0 {
		t.Errorf("the notifier for other-* apps got %d POSTs for app web", other.count())
	}

	// Health degraded, once; the notifier added now is not sent the past.
	setStatus(storage.AppStatus{Sync: storage.Synced, Revision: "c2c2c2c2c2c2c2c2", SyncedCommit: "c2c2c2c2c2c2c2c2", Health: "Failed",
		Objects: []storage.ObjectHealth{{ID: "apps/Deployment:prod/web", Status: "Failed", Message: "Progress deadline exceeded"}}})
	got = rcv.wait(t, 7)
	if ev := event(t, got[6]); ev.Type != notify.HealthDegraded || !strings.Contains(ev.Message, "Progress deadline exceeded") {
		t.Errorf("health POST: %+v", ev)
	}
	late := newReceiver(t)
	if _, err := m.Add(context.Background(), storage.Notifier{Name: "late", URL: late.URL, On: []string{"sync-failed", "deployed", "health-degraded", "drift-reverted", "mirror-failed"}}); err != nil {
		t.Fatal(err)
	}
	setStatus(storage.AppStatus{Sync: storage.Synced, Revision: "c3c3c3c3c3c3c3c3", SyncedCommit: "c3c3c3c3c3c3c3c3", Health: "Failed"})
	if got := late.wait(t, 1); event(t, got[0]).Commit != "c3c3c3c3c3c3c3c3" || len(got) != 1 {
		t.Errorf("late notifier: %+v", got)
	}
	rcv.wait(t, 8)
	// A POST answered but not yet recorded when fjord stops is sent again
	// after the start (under the same delivery ID, for the receiver to
	// drop): wait for the record.
	eventually(t, "the last deploy recorded as delivered", func() (bool, string) {
		ds := deliveries("chat")
		return len(ds) == 6 && ds[0].State == storage.DeliveryDelivered, fmt.Sprintf("%+v", ds[0])
	})

	// A restart sends nothing again; a delivery pending at the stop is
	// sent after the start.
	stop()
	if n := rcv.count(); n != 8 {
		t.Fatalf("chat got %d POSTs before the restart, want 8", n)
	}
	rcv.mu.Lock()
	rcv.fail = 1000
	rcv.mu.Unlock()
	// Its retry is an hour away when it stops: the delivery stays pending.
	_, stop = run(t, store, time.Hour)
	setStatus(storage.AppStatus{Sync: storage.SyncError, Revision: "c4c4c4c4c4c4c4c4", Error: "render: bad yaml", Health: "Failed"})
	rcv.wait(t, 9) // the first, failed attempt
	stop()
	rcv.mu.Lock()
	rcv.fail = 0
	rcv.mu.Unlock()
	_, _ = run(t, store, 10*time.Millisecond)
	eventually(t, "the pending delivery sent after the restart", func() (bool, string) {
		ds := deliveries("chat")
		return ds[0].Event == "sync-failed" && ds[0].State == storage.DeliveryDelivered, fmt.Sprintf("%+v", ds[0])
	})
	for _, p := range rcv.wait(t, 9)[8:] {
		if p.event != "sync-failed" {
			t.Errorf("after the restart: %+v, want only the pending sync-failed", p)
		}
	}
	if n := len(deliveries("chat")); n != 7 {
		t.Errorf("chat has %d deliveries, want 7", n)
	}
}

// TestMetrics: a receiver that answers 503 then 200, one that always
// answers 404 and one that is not listening, each given the same deploy
// with three attempts: every attempt counted by its status class, every
// finished delivery by its outcome, the delivered one's time observed, and
// nothing left pending. No label holds a URL.
func TestMetrics(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	if _, err := store.PutApp("web", "kind: Application", storage.AppMeta{Project: "default"}); err != nil {
		t.Fatal(err)
	}
	flaky := newReceiver(t)
	flaky.mu.Lock()
	flaky.fail = 1
	flaky.mu.Unlock()
	gone := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(gone.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // its port now refuses connections

	reg := prometheus.NewRegistry()
	m, _ := runConfig(t, notify.Config{Store: store, Registerer: reg, RetryBase: time.Millisecond, RetryMax: 4 * time.Millisecond, MaxAttempts: 3})
	for name, url := range map[string]string{"flaky": flaky.URL + "/hook/t0ken", "gone": gone.URL + "/hook/t0ken", "down": down.URL + "/hook/t0ken"} {
		if _, err := m.Add(context.Background(), storage.Notifier{Name: name, URL: url, On: []string{"deployed"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.SetAppStatus("web", storage.AppStatus{Sync: storage.Synced, Revision: "c1c1c1c1c1c1c1c1", SyncedCommit: "c1c1c1c1c1c1c1c1",
		Health: "Current", LastAttempt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"flaky": storage.DeliveryDelivered, "gone": storage.DeliveryFailed, "down": storage.DeliveryFailed} {
		eventually(t, name+"'s delivery "+want, func() (bool, string) {
			ds, err := store.Deliveries(name, 0)
			if err != nil {
				t.Fatal(err)
			}
			return len(ds) == 1 && ds[0].State == want, fmt.Sprintf("%+v", ds)
		})
	}
	// The gauge drops as each delivery's goroutine ends, just after its
	// record is written.
	eventually(t, "no delivery pending", func() (bool, string) {
		err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP fjord_notify_pending_deliveries Notification deliveries this replica is sending, neither delivered nor failed yet.
# TYPE fjord_notify_pending_deliveries gauge
fjord_notify_pending_deliveries 0
`), "fjord_notify_pending_deliveries")
		return err == nil, fmt.Sprint(err)
	})

	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP fjord_notify_attempts_total Notification POSTs, by result: the answer's status class (2xx, 4xx, 5xx, ...) or error (no answer).
# TYPE fjord_notify_attempts_total counter
fjord_notify_attempts_total{notifier="down",result="error"} 3
fjord_notify_attempts_total{notifier="flaky",result="2xx"} 1
fjord_notify_attempts_total{notifier="flaky",result="5xx"} 1
fjord_notify_attempts_total{notifier="gone",result="4xx"} 3
# HELP fjord_notify_deliveries_total Notification deliveries finished, by outcome: delivered (answered 2xx), failed (attempts spent).
# TYPE fjord_notify_deliveries_total counter
fjord_notify_deliveries_total{notifier="down",outcome="failed"} 1
fjord_notify_deliveries_total{notifier="flaky",outcome="delivered"} 1
fjord_notify_deliveries_total{notifier="gone",outcome="failed"} 1
`), "fjord_notify_attempts_total", "fjord_notify_deliveries_total"); err != nil {
		t.Error(err)
	}
	// Only the delivered one has a time, observed once (its value is
	// timing, for benchmarks, not tests).
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	observed := map[string]uint64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if strings.Contains(l.GetValue(), "t0ken") || strings.Contains(l.GetValue(), "127.0.0.1") {
					t.Errorf("%s has a label holding the URL: %s=%q", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
			if mf.GetName() == "fjord_notify_delivery_seconds" {
				observed[mt.GetLabel()[0].GetValue()] = mt.GetHistogram().GetSampleCount()
			}
		}
	}
	if want := map[string]uint64{"flaky": 1}; fmt.Sprint(observed) != fmt.Sprint(want) {
		t.Errorf("fjord_notify_delivery_seconds sample counts %v, want %v", observed, want)
	}
}

func attemptCodes(d storage.Delivery) string {
	var s []string
	for _, a := range d.Attempts {
		s = append(s, fmt.Sprint(a.Code))
	}
	return strings.Join(s, ",")
}

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not after 30s; last seen: %s", what, last)
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		n    storage.Notifier
		want string
	}{
		{storage.Notifier{Name: "a", URL: "ftp://x", Format: "json", On: []string{"deployed"}}, "http:// or https://"},
		{storage.Notifier{Name: "a", URL: "https://u:p@x/h", Format: "json", On: []string{"deployed"}}, "must not hold a user or password"},
		{storage.Notifier{Name: "a", URL: "https://x/h", Format: "xml", On: []string{"deployed"}}, "choose json or slack"},
		{storage.Notifier{Name: "a", URL: "https://x/h", Format: "json"}, "no events"},
		{storage.Notifier{Name: "a", URL: "https://x/h", Format: "json", On: []string{"deploy"}}, `unknown event "deploy"`},
		{storage.Notifier{Name: "a", URL: "https://x/h", Format: "json", On: []string{"deployed"}, AppGlob: "["}, "not a glob"},
	} {
		if err := notify.Validate(c.n); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.n, err, c.want)
		}
	}
	if got := notify.RedactURL("https://hooks.slack.com/services/T000/B000/XXXX"); got != "https://hooks.slack.com/…" {
		t.Errorf("RedactURL = %q", got)
	}
}

// EventTypes is a fresh list each call: a caller changing its copy
// changes no one else's.
func TestEventTypesIsACopy(t *testing.T) {
	a := notify.EventTypes()
	a[0] = "changed"
	if b := notify.EventTypes(); b[0] != notify.SyncFailed {
		t.Fatalf("EventTypes()[0] = %q after a caller changed its copy", b[0])
	}
}
