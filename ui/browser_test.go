package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fjordhq/fjord/internal/fjordtest"
	"github.com/fjordhq/fjord/internal/testenv"
)

// chromium returns the headless browser the UI is tested in. Without one
// the test skips, unless CI is set: there it must run (make test installs
// Debian's chromium package).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set and no chromium is installed: install Debian's chromium package (make test does) so the web UI is tested in a browser")
	}
	t.Skip("chromium not found: install Debian's chromium package (make test installs it) to test the web UI in a browser")
	return ""
}

// artifacts is where the test keeps its screenshots: $FJORD_ARTIFACTS if
// set, else the test's artifact directory (kept with go test -artifacts).
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("FJORD_ARTIFACTS")
	if dir == "" {
		dir = t.ArtifactDir()
	} else {
		dir = filepath.Join(dir, t.Name())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s (set FJORD_ARTIFACTS=DIR, or run go test -artifacts, to keep them)", dir)
	return dir
}

// browser starts headless chromium with its own profile, as root too
// (--no-sandbox), and returns a chromedp context on a tab of it.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// a11yProbe checks a page's accessibility basics in the browser: every
// visible form control has a label, every button a name, one h1 and no
// heading level skipped, and every status colour of the stylesheet (the
// .s-* classes and the reports' pass/warn/fail) has a contrast ratio of at
// least 4.5:1 with its text, computed from computed styles (WCAG 2.x
// relative luminance).
const a11yProbe = `(() => {
  const problems = [];
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    if (!((el.labels && el.labels.length) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")))
      problems.push("control without a label: " + el.outerHTML.slice(0, 100));
  }
  for (const b of document.querySelectorAll("button")) {
    if (!b.textContent.trim() && !b.getAttribute("aria-label")) problems.push("button without a name");
  }
  const hs = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")];
  const h1 = hs.filter(h => h.tagName === "H1").length;
  if (h1 !== 1) problems.push(h1 + " h1 elements, want 1");
  let prev = 0;
  for (const h of hs) {
    const l = +h.tagName[1];
    if (prev === 0 && l !== 1) problems.push("the first heading is " + h.tagName);
    if (prev && l > prev + 1) problems.push(h.tagName + " right after H" + prev + ": " + h.textContent.trim());
    prev = l;
  }
  const rgba = c => c.match(/[\d.]+/g).map(Number);
  const lum = c => {
    const [r, g, b] = rgba(c).slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const classes = new Set();
  for (const sheet of document.styleSheets) {
    for (const rule of sheet.cssRules) {
      for (const m of (rule.selectorText || "").matchAll(/\.(s-[a-z]+|pass|warn|fail)\b/g)) classes.add(m[1]);
    }
  }
  const ratios = {};
  for (const cls of classes) {
    const probe = document.createElement("span");
    probe.className = "status " + cls;
    probe.textContent = cls;
    document.body.appendChild(probe);
    const cs = getComputedStyle(probe);
    const bg = rgba(cs.backgroundColor);
    if (bg.length === 4 && bg[3] === 0) problems.push("status class " + cls + " has no background colour");
    const a = lum(cs.color), b = lum(cs.backgroundColor);
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    ratios[cls] = Math.round(ratio * 100) / 100;
    if (ratio < 4.5) problems.push("status class " + cls + ": contrast " + ratio.toFixed(2) + ":1 (" + cs.color + " on " + cs.backgroundColor + "), want at least 4.5:1");
    probe.remove();
  }
  if (classes.size < 5) problems.push("found only " + classes.size + " status classes in the stylesheet");
  return {problems, ratios};
})()`

type a11yResult struct {
	Problems []string
	Ratios   map[string]float64
}

// ui drives one browser through the UI of one fjord.
type uiSession struct {
	t    *testing.T
	ctx  context.Context
	srv  *fjordtest.Server
	shot string
}

func (u *uiSession) base() string { return "http://" + u.srv.HTTPAddr }

func (u *uiSession) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		u.t.Fatalf("%s: %v\npage:\n%s", what, err, u.text())
	}
}

// submit runs a click that submits a form and waits for the page it
// leads to.
func (u *uiSession) submit(what string, click chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 2*time.Minute)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, click); err != nil {
		u.t.Fatalf("%s: %v\npage:\n%s", what, err, u.text())
	}
}

// wait polls a JavaScript predicate until it is true.
func (u *uiSession) wait(what, predicate string) {
	u.t.Helper()
	u.do(what, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(90*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))(ctx, t)
		return chromedp.Void{}, err
	})
}

func eval[T any](u *uiSession, expr string) T {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		u.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (u *uiSession) text() string {
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

// page opens path and waits for its h1.
func (u *uiSession) page(path string) {
	u.t.Helper()
	u.do("open "+path, chromedp.Navigate(u.base()+path), chromedp.WaitVisible(chromedp.CSS("h1")))
}

// check runs the accessibility probe on the current page.
func (u *uiSession) check(name string) {
	u.t.Helper()
	r := eval[a11yResult](u, a11yProbe)
	for _, p := range r.Problems {
		u.t.Errorf("%s page: %s", name, p)
	}
	u.t.Logf("%s page: status colour contrast ratios %v", name, r.Ratios)
}

// screenshot saves the whole page as NAME.png.
func (u *uiSession) screenshot(name string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		u.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(u.shot, name+".png"), png, 0o644); err != nil {
		u.t.Fatal(err)
	}
}

func (u *uiSession) fjord(args ...string) string {
	u.t.Helper()
	out, err := u.srv.Fjord(args...)
	if err != nil {
		u.t.Fatalf("fjord %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (u *uiSession) git(dir string, args ...string) string {
	u.t.Helper()
	out, err := u.srv.Git(context.Background(), dir, args...)
	if err != nil {
		u.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// loginURL is the last line `fjord ui login` prints.
func (u *uiSession) loginURL(args ...string) string {
	u.t.Helper()
	lines := strings.Split(strings.TrimSpace(u.fjord(append([]string{"ui", "login"}, args...)...)), "\n")
	return lines[len(lines)-1]
}

// manifests writes the app's kustomization: two ConfigMaps in two sync
// waves.
func manifests(t *testing.T, dir, color string) {
	t.Helper()
	files := map[string]string{
		"deploy/kustomization.yaml": "resources:\n- config.yaml\n- later.yaml\n",
		"deploy/config.yaml":        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  color: " + color + "\n",
		"deploy/later.yaml":         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-later\n  annotations:\n    argocd.argoproj.io/sync-wave: \"1\"\ndata:\n  a: b\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func application(name, sshAddr, repo, ns string) string {
	_, port, _ := net.SplitHostPort(sshAddr)
	return `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: ` + name + `
  labels:
    team: ` + name + `
spec:
  project: default
  source:
    repoURL: ssh://git@127.0.0.1:` + port + `/` + repo + `.git
    targetRevision: main
    path: deploy
  destination:
    server: https://kubernetes.default.svc
    namespace: ` + ns + `
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
`
}

// TestBrowser is the web UI as people use it, in headless Chromium against
// a real fjord (the binary, with the reconciler on a real kube-apiserver),
// repos pushed over SSH with the git CLI: log in through the link of
// `fjord ui login`, see the app synced, push a commit and watch the page
// update by itself, cause drift with another field manager and see it
// with that manager, press "sync now", look at the diff, mirrors (with an
// upstream force-push) and repos pages; log out and get no data; a
// read-only user does not see the app of a repo not granted. Every page
// is screenshotted and checked for accessibility basics. It logs how long
// the pushed commit took from the end of its sync to the page (SSE).
func TestBrowser(t *testing.T) {
	chrome := chromium(t)
	env := testenv.Shared(t)
	ns, secretNS := env.Namespace(t), env.Namespace(t)
	srv := fjordtest.New(t)
	if err := srv.Start("--kubeconfig", env.Kubeconfig()); err != nil {
		t.Fatal(err)
	}
	u := &uiSession{t: t, ctx: browser(t, chrome), srv: srv, shot: artifacts(t)}

	// Two repos, each the source of one app.
	work := t.TempDir()
	for _, repo := range []string{"web", "secret"} {
		u.fjord("repo", "create", repo)
		dir := filepath.Join(work, repo)
		u.git("", "clone", "-q", srv.URL(repo), dir)
		manifests(t, dir, "blue")
		u.git(dir, "add", ".")
		u.git(dir, "commit", "-q", "-m", "first "+repo+" config")
		u.git(dir, "push", "-q", "origin", "HEAD:main")
	}
	appFile := filepath.Join(work, "apps.yaml")
	os.WriteFile(appFile, []byte(application("web-app", srv.SSHAddr, "web", ns)+"---\n"+application("secret-app", srv.SSHAddr, "secret", secretNS)), 0o644)
	u.fjord("app", "apply", "-f", appFile)

	// A read-only user who may read web only.
	readerKey, err := fjordtest.WriteKey(filepath.Join(srv.Home, "reader"))
	if err != nil {
		t.Fatal(err)
	}
	u.fjord("user", "add", "reader", "--key", readerKey+".pub")
	u.fjord("grant", "reader", "web", "read")

	// A mirror whose upstream is then force-pushed.
	upstream := filepath.Join(work, "upstream.git")
	u.git("", "init", "-q", "--bare", "-b", "main", upstream)
	up := filepath.Join(work, "up")
	u.git("", "clone", "-q", upstream, up)
	for i := 1; i <= 2; i++ {
		os.WriteFile(filepath.Join(up, "f"), []byte(fmt.Sprint(i)), 0o644)
		u.git(up, "add", ".")
		u.git(up, "commit", "-q", "-m", fmt.Sprint("upstream ", i))
	}
	u.git(up, "push", "-q", "origin", "HEAD:main")
	u.fjord("mirror", "add", "upstream-copy", "--upstream", "file://"+upstream)
	u.git(up, "reset", "-q", "--hard", "HEAD~1")
	u.git(up, "push", "-q", "-f", "origin", "HEAD:main")
	u.fjord("mirror", "sync", "upstream-copy")

	// No session: the login page, and none of the data.
	u.page("/ui/")
	if body := u.text(); !strings.Contains(body, "fjord ui login") || strings.Contains(body, "web-app") {
		t.Fatalf("the apps page without a session:\n%s", body)
	}
	u.check("login")
	u.screenshot("login")

	// Log in as admin through the one-time link: the apps page, both apps.
	u.do("open the login link", chromedp.Navigate(u.loginURL()), chromedp.WaitVisible(chromedp.CSS("h1")))
	if loc := eval[string](u, "location.pathname"); loc != "/ui/" {
		t.Fatalf("after the login link the browser is at %s, want /ui/", loc)
	}
	u.wait("web-app synced on the apps page", `(() => { const r = document.querySelector('tr[data-app="web-app"]'); return r && r.innerText.includes("Synced") && r.innerText.includes("first web config"); })()`)
	if body := u.text(); !strings.Contains(body, "secret-app") {
		t.Fatalf("the admin does not see secret-app:\n%s", body)
	}
	u.check("apps")
	u.screenshot("apps")

	// The app page: objects by wave and kind, synced.
	u.page("/ui/apps/web-app")
	u.wait("the object tree", `(() => { const t = document.getElementById("objects"); return t && t.innerText.includes("Wave 0") && t.innerText.includes("Wave 1") && t.innerText.includes("web-config") && t.innerText.includes("web-later"); })()`)

	// A push: the page shows the new commit by itself, without a reload.
	web := filepath.Join(work, "web")
	manifests(t, web, "green")
	u.git(web, "commit", "-q", "-am", "green for the spring release")
	head := u.git(web, "rev-parse", "HEAD")
	eval[bool](u, `(() => {
	  window.fjordNoReload = true; window.fjordSeen = 0;
	  const want = "`+head[:12]+`";
	  const look = () => { const el = document.getElementById("app-commit"); if (!window.fjordSeen && el && el.textContent.includes(want)) window.fjordSeen = Date.now(); };
	  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
	  return true; })()`)
	u.git(web, "push", "-q", "origin", "HEAD:main")
	u.wait("the pushed commit on the app page", `window.fjordSeen > 0`)
	if !eval[bool](u, `window.fjordNoReload === true`) {
		t.Fatal("the app page reloaded to show the push; it should update in place")
	}
	seen := eval[float64](u, `window.fjordSeen`)
	var history []struct {
		Start    time.Time     `json:"start"`
		Duration time.Duration `json:"duration"`
		Revision string        `json:"revision"`
		Trigger  string        `json:"trigger"`
	}
	if err := json.Unmarshal([]byte(u.fjord("app", "history", "web-app", "-o", "json")), &history); err != nil {
		t.Fatal(err)
	}
	for _, h := range history {
		if h.Revision == head {
			end := h.Start.Add(h.Duration)
			t.Logf("SSE update latency: the page showed commit %s %.0f ms after its sync ended (%s trigger)", head[:12], seen-float64(end.UnixMilli()), h.Trigger)
			break
		}
	}
	u.wait("the new subject", `document.getElementById("app-commit").innerText.includes("green for the spring release")`)

	// Drift by another field manager: it appears with that manager, live.
	patch := `{"data":{"color":"red"}}`
	req, _ := http.NewRequest(http.MethodPatch, env.URL()+"/api/v1/namespaces/"+ns+"/configmaps/web-config?fieldManager=ops-oncall", strings.NewReader(patch))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	resp, err := env.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("patch web-config: %s %s", resp.Status, b)
	}
	u.wait("the drift with its field manager", `(() => { const d = document.getElementById("drifts"); return d && d.innerText.includes("ops-oncall") && d.innerText.includes("data.color"); })()`)
	if !eval[bool](u, `window.fjordNoReload === true`) {
		t.Fatal("the app page reloaded to show the drift; it should update in place")
	}
	u.check("app")
	u.screenshot("app")

	// Sync now, as admin.
	u.submit("press sync now", chromedp.Click(chromedp.ID("sync-now")))
	u.wait("the sync's result", `document.body.innerText.includes("Sync now: ok")`)
	u.wait("a manual sync in the history", `document.getElementById("history").innerText.includes("manual")`)
	u.screenshot("app-after-sync")

	u.page("/ui/apps/web-app/diff")
	u.wait("the diff page", `document.body.innerText.includes("a sync would change nothing") || !!document.getElementById("diff")`)
	u.check("diff")
	u.screenshot("diff")

	u.page("/ui/mirrors")
	u.wait("the force-push with its hidden ref", `(() => { const e = document.getElementById("mirror-events"); return e && e.innerText.includes("force-push") && e.innerText.includes("refs/fjord/"); })()`)
	u.check("mirrors")
	u.screenshot("mirrors")

	u.page("/ui/repos")
	u.wait("the repos", `(() => { const r = document.getElementById("repos"); return r && r.innerText.includes("web") && r.innerText.includes("secret") && r.innerText.includes("upstream-copy"); })()`)
	u.check("repos")
	u.screenshot("repos")

	// Log out: the next page is the login page, with no data.
	u.page("/ui/")
	u.submit("log out", chromedp.Click(chromedp.CSS(`form[action="/ui/logout"] button`)))
	u.wait("the login page after logout", `document.body.innerText.includes("fjord ui login")`)
	u.page("/ui/apps/web-app")
	if body := u.text(); strings.Contains(body, "web-config") || !strings.Contains(body, "fjord ui login") {
		t.Fatalf("the app page after logout:\n%s", body)
	}

	// The read-only user sees web-app, not secret-app, and cannot sync.
	u.do("open the reader's login link", chromedp.Navigate(u.loginURL("--user", "reader")), chromedp.WaitVisible(chromedp.CSS("h1")))
	u.wait("the reader's apps page", `!!document.querySelector('tr[data-app="web-app"]')`)
	if body := u.text(); strings.Contains(body, "secret-app") || !strings.Contains(body, "1 of 1 apps") {
		t.Fatalf("the reader's apps page:\n%s", body)
	}
	u.screenshot("apps-reader")
	u.page("/ui/apps/secret-app")
	if body := u.text(); strings.Contains(body, "web-config") || strings.Contains(body, "Synced") {
		t.Fatalf("the reader opening secret-app:\n%s", body)
	}
	u.page("/ui/apps/web-app")
	if eval[bool](u, `!!document.getElementById("sync-now")`) {
		t.Fatal("the reader has a sync button")
	}
	u.page("/ui/repos")
	if body := u.text(); strings.Contains(body, "secret") || strings.Contains(body, "upstream-copy") {
		t.Fatalf("the reader's repos page shows repos not granted:\n%s", body)
	}

	// A page open on its live stream does not hold up fjord's shutdown:
	// the stream ends as the HTTP server shuts down, so the server is not
	// left waiting out its grace period for the connection to go idle.
	u.page("/ui/")
	u.wait("the live stream", `document.getElementById("live-state").textContent.startsWith("Live:")`)
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop fjord with a browser on the live stream: %v", err)
	}
	for _, l := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(l, "msg=shutdown") && strings.Contains(l, "deadline") {
			t.Fatalf("fjord waited out its shutdown grace period for the open stream: %s", l)
		}
	}
}
