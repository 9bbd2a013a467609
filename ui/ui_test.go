package ui_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/fjordhq/fjord/ui"
	gossh "golang.org/x/crypto/ssh"
)

// env is a UI on a real store with real repos: two repos, an app on each,
// an admin and a read-only user granted one of the repos.
type env struct {
	t     *testing.T
	store *storage.Store
	srv   *httptest.Server
}

func newEnv(t *testing.T, opts ...func(*ui.Config)) *env {
	t.Helper()
	ctx := context.Background()
	store, err := storage.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, u := range []storage.User{{Name: "admin", Admin: true}, {Name: "reader"}} {
		u.Keys = []storage.Key{newKey(t)}
		if _, err := store.CreateUser(u); err != nil {
			t.Fatal(err)
		}
	}
	for _, repo := range []string{"team/web", "team/secret"} {
		if _, err := store.CreateRepo(ctx, storage.Repo{Name: repo}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.SetGrant("reader", "team/web", storage.AccessRead); err != nil {
		t.Fatal(err)
	}
	for name, repo := range map[string]string{"web": "team/web", "secret-app": "team/secret"} {
		if _, err := store.PutApp(name, "kind: Application", storage.AppMeta{Labels: map[string]string{"team": name}}); err != nil {
			t.Fatal(err)
		}
		if err := store.SetAppStatus(name, storage.AppStatus{Repo: repo, Sync: storage.Synced, Health: "Current"}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := ui.Config{Store: store}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := ui.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Shutdown(); srv.Close() })
	return &env{t: t, store: store, srv: srv}
}

func newKey(t testing.TB) storage.Key {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	k, err := storage.ParseKey(string(gossh.MarshalAuthorizedKey(pk)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// client is a browser-like client with its own cookie jar that does not
// follow redirects (so the test sees them).
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// login redeems a fresh one-time token for user and returns the client.
func (e *env) login(user string) *http.Client {
	e.t.Helper()
	token, _, err := e.store.CreateLoginToken(user, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.client()
	resp := e.get(c, "/ui/login?token="+token)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		e.t.Fatalf("login as %s: %s, Location %q", user, resp.Status, resp.Header.Get("Location"))
	}
	return c
}

func (e *env) get(c *http.Client, path string) *http.Response {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNoSessionGetsLoginPageOnly(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	for _, path := range []string{"/ui/", "/ui/apps/web", "/ui/apps/web/diff", "/ui/mirrors", "/ui/repos", "/ui/events", "/ui/nope"} {
		resp := e.get(c, path)
		b := body(t, resp)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b, "fjord ui login") {
			t.Errorf("GET %s without a session: %s, want 401 and the login page", path, resp.Status)
		}
		for _, secret := range []string{"team/web", "secret-app", "team/secret", "Synced"} {
			if strings.Contains(b, secret) {
				t.Errorf("GET %s without a session shows %q", path, secret)
			}
		}
	}
	// A forged cookie is no session either.
	u, _ := url.Parse(e.srv.URL + "/ui/")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "fjord_session", Value: "GUESSED", Path: "/ui/"}})
	if resp := e.get(c, "/ui/"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a made-up session cookie: %s", resp.Status)
	}
	// POSTs too.
	resp, err := c.PostForm(e.srv.URL+"/ui/apps/web/sync", url.Values{"csrf": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("sync without a session: %s", resp.Status)
	}
}

func TestLoginTokenSingleUseAndCookie(t *testing.T) {
	e := newEnv(t)
	token, _, err := e.store.CreateLoginToken("admin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := e.client()
	resp := e.get(c, "/ui/login?token="+token)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use: %s", resp.Status)
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "fjord_session" {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.MaxAge <= 0 || sess.Path != "/ui/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, a Max-Age, Path /ui/", sess)
	}
	if resp := e.get(c, "/ui/"); resp.StatusCode != http.StatusOK || !strings.Contains(body(t, resp), "secret-app") {
		t.Fatalf("admin after login: %s", resp.Status)
	}
	// Used once: a second browser gets the login page and no session.
	other := e.client()
	resp = e.get(other, "/ui/login?token="+token)
	if b := body(t, resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b, "used already or expired") {
		t.Fatalf("second use of a token: %s", resp.Status)
	}
	if resp := e.get(other, "/ui/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("second use of a token gave a session: %s", resp.Status)
	}
	// An expired token is refused, and gone.
	expired, _, err := e.store.CreateLoginToken("admin", -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp := e.get(e.client(), "/ui/login?token="+expired); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token: %s", resp.Status)
	}
	// Deleting the user ends the session.
	if err := e.store.DeleteUser("admin"); err != nil {
		t.Fatal(err)
	}
	if resp := e.get(c, "/ui/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session of a deleted user: %s", resp.Status)
	}
}

func TestReadOnlyUserSeesGrantedAppsOnly(t *testing.T) {
	e := newEnv(t)
	c := e.login("reader")
	b := body(t, e.get(c, "/ui/"))
	if !strings.Contains(b, `data-app="web"`) || strings.Contains(b, "secret-app") || strings.Contains(b, "team/secret") {
		t.Fatalf("reader's apps page: want web and not secret-app:\n%s", b)
	}
	if strings.Contains(b, `id="sync-now"`) {
		t.Fatal("reader sees a sync button")
	}
	if resp := e.get(c, "/ui/apps/secret-app"); resp.StatusCode != http.StatusNotFound || strings.Contains(body(t, resp), "team/secret") {
		t.Fatalf("reader opening an app of a repo not granted: %s", resp.Status)
	}
	if resp := e.get(c, "/ui/apps/web"); resp.StatusCode != http.StatusOK {
		t.Fatalf("reader opening a granted app: %s", resp.Status)
	}
	if b := body(t, e.get(c, "/ui/repos")); !strings.Contains(b, "team/web") || strings.Contains(b, "team/secret") {
		t.Fatalf("reader's repos page:\n%s", b)
	}
	// The filters apply to what the user may see.
	a := e.login("admin")
	if b := body(t, e.get(a, "/ui/?label=team%3Dsecret-app")); !strings.Contains(b, "secret-app") || strings.Contains(b, `data-app="web"`) {
		t.Fatalf("label filter:\n%s", b)
	}
	if b := body(t, e.get(a, "/ui/?label=oops")); !strings.Contains(b, "write key=value") {
		t.Fatalf("a bad label filter is not explained:\n%s", b)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestSyncNeedsAdminAndCSRF(t *testing.T) {
	e := newEnv(t)
	post := func(c *http.Client, path string, form url.Values, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	a := e.login("admin")
	page := body(t, e.get(a, "/ui/apps/web"))
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the app page")
	}
	token := m[1]
	if resp := post(a, "/ui/apps/web/sync", nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sync without a CSRF token: %s", resp.Status)
	}
	if resp := post(a, "/ui/apps/web/sync", url.Values{"csrf": {"WRONG"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sync with a wrong CSRF token: %s", resp.Status)
	}
	if resp := post(a, "/ui/apps/web/sync", url.Values{"csrf": {token}}, map[string]string{"Origin": "http://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sync from another origin: %s", resp.Status)
	}
	if resp := post(a, "/ui/apps/web/sync", url.Values{"csrf": {token}}, map[string]string{"Origin": "null"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sync from an opaque origin: %s", resp.Status)
	}
	if resp := post(a, "/ui/apps/web/sync", url.Values{"csrf": {token}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sync from another site: %s", resp.Status)
	}
	// With the right token the request reaches the reconciler, which this
	// handler has not: it says so.
	if resp := post(a, "/ui/apps/web/sync", url.Values{"csrf": {token}}, nil); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body(t, resp), "reconciler is off") {
		t.Errorf("admin sync with the token: %s", resp.Status)
	}
	// A reader's own token does not make a reader an admin.
	r := e.login("reader")
	rt := csrfRE.FindStringSubmatch(body(t, e.get(r, "/ui/apps/web")))[1]
	if resp := post(r, "/ui/apps/web/sync", url.Values{"csrf": {rt}}, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body(t, resp), "only an admin") {
		t.Errorf("reader sync: %s", resp.Status)
	}
	// Another session's token is no good either, even the same admin's:
	// the refusal is the CSRF check's, not the admin check's.
	a2 := e.login("admin")
	if resp := post(a2, "/ui/apps/web/sync", url.Values{"csrf": {token}}, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body(t, resp), "CSRF token is missing or wrong") {
		t.Errorf("a second admin session with the first one's token: %s", resp.Status)
	}
	// Log out ends the session.
	if resp := post(a, "/ui/logout", url.Values{"csrf": {token}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %s", resp.Status)
	}
	if resp := e.get(a, "/ui/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after logout: %s", resp.Status)
	}
}

// On a replica that is not the primary "sync now" is refused, naming the
// primary, as the admin API's sync is.
func TestSyncOnlyOnThePrimary(t *testing.T) {
	e := newEnv(t, func(c *ui.Config) {
		c.WriteGate = func() error { return errors.New("read-only replica: the primary is fjord-0") }
	})
	a := e.login("admin")
	m := csrfRE.FindStringSubmatch(body(t, e.get(a, "/ui/apps/web")))
	if m == nil {
		t.Fatal("no CSRF token on the app page")
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/apps/web/sync", strings.NewReader(url.Values{"csrf": {m[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b := body(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(b, "the primary is fjord-0") {
		t.Fatalf("sync on a replica: %s %s", resp.Status, b)
	}
}

// TestEventsFollowVisibility opens the event stream as the reader: a
// change to an app the reader may not see is not sent; the one after it,
// to the reader's app, is the first event to arrive.
func TestEventsFollowVisibility(t *testing.T) {
	e := newEnv(t)
	c := e.login("reader")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/ui/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	// The stream's greeting comes first: after it, the subscription is on.
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			break
		}
	}
	if err := e.store.UpdateAppStatus("secret-app", func(s *storage.AppStatus) { s.Health = "Failed" }); err != nil {
		t.Fatal(err)
	}
	if err := e.store.UpdateAppStatus("web", func(s *storage.AppStatus) { s.Health = "InProgress" }); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
		if !ok {
			continue
		}
		var ev struct{ Kind, Name string }
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind != "app" || ev.Name != "web" {
			t.Fatalf("first event to the reader: %+v, want app web (secret-app is not theirs)", ev)
		}
		return
	}
}

// TestAppRowsEscape puts markup in every value an apps row shows that a
// user or the cluster can choose (labels, a drift's object and field
// manager, a repo's commit subject is git's): none of it may reach the page
// as markup.
func TestAppRowsEscape(t *testing.T) {
	e := newEnv(t)
	evil := `"><img src=x onerror=alert(1)><script>alert(2)</script>`
	if _, err := e.store.PutApp("web", "kind: Application", storage.AppMeta{Labels: map[string]string{"team": evil}, Cluster: evil}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RecordDrift("web", storage.DriftEvent{Time: time.Now(), Object: evil, Manager: evil, Action: storage.DriftAction(evil)}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.UpdateAppStatus("web", func(s *storage.AppStatus) { s.Health = evil; s.Sync = storage.SyncStatus(evil) }); err != nil {
		t.Fatal(err)
	}
	b := body(t, e.get(e.login("admin"), "/ui/"))
	for _, bad := range []string{"<img", "<script>alert", "alert(1)>"} {
		if strings.Contains(b, bad) {
			t.Errorf("the apps page contains %q unescaped", bad)
		}
	}
	if !strings.Contains(b, "&lt;script&gt;alert(2)&lt;/script&gt;") {
		t.Errorf("the apps page does not show the label escaped:\n%s", b)
	}
}

// TestSessionSurvivesRestart logs in, closes the store, opens it again
// under a new handler (a restart of fjord): the same cookie still works.
func TestSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() (*storage.Store, *httptest.Server) {
		store, err := storage.Open(ctx, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ui.New(ui.Config{Store: store})
		if err != nil {
			t.Fatal(err)
		}
		return store, httptest.NewServer(h)
	}
	store, srv := open()
	if _, err := store.CreateUser(storage.User{Name: "admin", Admin: true, Keys: []storage.Key{newKey(t)}}); err != nil {
		t.Fatal(err)
	}
	token, _, err := store.CreateLoginToken("admin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := (&http.Client{CheckRedirect: noRedirect}).Get(srv.URL + "/ui/login?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookie := resp.Cookies()[0]
	srv.Close()
	store.Close()

	store, srv = open()
	defer store.Close()
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/", nil)
	req.AddCookie(cookie)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the session after a restart: %s", resp.Status)
	}
}

// TestAppPageDetails fills an app's records as the reconciler does (a
// sync that ran a hook Job, a failed sync with a long error, drift
// reported with selfHeal off, an orphan) and checks the app page shows
// each: the hook and its Job, the whole error, the object OutOfSync with
// why, the orphan.
func TestAppPageDetails(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	ok := storage.AppStatus{Repo: "team/web", Revision: "aaaa1111", SyncedCommit: "aaaa1111", Sync: storage.Synced, Health: "Current", LastSynced: now.Add(-time.Minute),
		Objects: []storage.ObjectHealth{{ID: "ConfigMap/prod/web-config", Status: "Current"}, {ID: "apps.Deployment/prod/web", Status: "InProgress", Message: "1 of 3 replicas ready"}},
		Orphans: []string{"ConfigMap/prod/old-config"}}
	if err := e.store.RecordAppSync("web", ok, nil, storage.AppSync{Start: now.Add(-2 * time.Minute), Duration: time.Second, Trigger: storage.TriggerPush, Revision: "aaaa1111",
		Changes: []storage.ObjectChange{{ID: "batch.Job/prod/db-migrate", Action: "created", Reason: "PreSync hook"}}}); err != nil {
		t.Fatal(err)
	}
	longErr := "apply apps.Deployment/prod/web: admission webhook denied the request:\n" + strings.Repeat("line of detail\n", 40) + "THE LAST LINE"
	failed := ok
	failed.Sync, failed.Error, failed.Revision = storage.SyncError, longErr, "bbbb2222"
	if err := e.store.RecordAppSync("web", failed, nil, storage.AppSync{Start: now, Duration: time.Second, Trigger: storage.TriggerPush, Revision: "bbbb2222", Error: longErr}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RecordDrift("web", storage.DriftEvent{Time: now, Object: "ConfigMap/prod/web-config", Fields: []string{"data.color"}, Manager: "kubectl-edit", Action: storage.DriftReported}); err != nil {
		t.Fatal(err)
	}
	b := body(t, e.get(e.login("admin"), "/ui/apps/web"))
	for _, want := range []string{
		"batch.Job/prod/db-migrate", "PreSync", // the hook and its Job
		"THE LAST LINE", "admission webhook denied", // the whole error
		"changed outside git (selfHeal is off)", // the drifted object's sync state
		"prod/old-config", "kept (prune off)",   // the orphan
		"1 of 3 replicas ready", "kubectl-edit",
		`id="app-cluster">in-cluster<`, // fjord's own cluster, by Argo CD's name
	} {
		if !strings.Contains(b, want) {
			t.Errorf("the app page lacks %q", want)
		}
	}
	// An app on another cluster names it, on its page and in the list.
	if _, err := e.store.PutApp("edge", "kind: Application", storage.AppMeta{Cluster: "edge-oslo"}); err != nil {
		t.Fatal(err)
	}
	if b := body(t, e.get(e.login("admin"), "/ui/apps/edge")); !strings.Contains(b, `id="app-cluster">edge-oslo<`) {
		t.Errorf("the page of an app on cluster edge-oslo does not name it")
	}
	if b := body(t, e.get(e.login("admin"), "/ui/")); !strings.Contains(b, "<td>edge-oslo</td>") || !strings.Contains(b, "<td>in-cluster</td>") {
		t.Errorf("the apps table does not name each app's cluster")
	}
	if n := strings.Count(b, `id="app-error"`); n != 1 {
		t.Errorf("the app page shows the last error %d times, want once on top", n)
	}
}
