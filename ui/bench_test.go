package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
	"github.com/fjordhq/fjord/ui"
)

// benchApps is the size of the store the apps page is measured on.
const benchApps = 1000

// BenchmarkAppsPage renders the apps page for an admin from a store
// holding 1,000 apps (on 10 repos, each app synced to one of 100 real
// commits, with a sync record, labels, and drift on every tenth), and
// reports p50 and p99 of one render. The peer in the same run is encoding
// the same apps as JSON, what `fjord app list -o json` is sent: the
// ratio says what the HTML costs over the data itself. Goal: p99 < 100 ms.
//
//	go test -run '^$' -bench AppsPage -benchtime 200x ./ui/
func BenchmarkAppsPage(b *testing.B) {
	ctx := context.Background()
	store, err := storage.Open(ctx, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	commits := benchRepos(b, store, 10, 10)
	if _, err := store.CreateUser(storage.User{Name: "admin", Admin: true, Keys: []storage.Key{newKey(b)}}); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range benchApps {
		name := fmt.Sprintf("app-%04d", i)
		c := commits[i%len(commits)]
		if _, err := store.PutApp(name, "kind: Application", storage.AppMeta{Labels: map[string]string{"team": fmt.Sprint("t", i%20), "env": "prod"}, Project: "default"}); err != nil {
			b.Fatal(err)
		}
		st := storage.AppStatus{Repo: c.repo, Revision: c.sha, SyncedCommit: c.sha, Sync: storage.Synced, Health: "Current", LastAttempt: now, LastSynced: now}
		rec := storage.AppSync{Start: now.Add(-time.Second), Duration: 800 * time.Millisecond, Trigger: storage.TriggerPush, Revision: c.sha, Unchanged: 12}
		if err := store.RecordAppSync(name, st, &storage.AppInventory{Commit: c.sha}, rec); err != nil {
			b.Fatal(err)
		}
		if i%10 == 0 {
			if err := store.RecordDrift(name, storage.DriftEvent{Time: now, Object: "apps/Deployment/prod/web", Fields: []string{"spec.replicas"}, Manager: "kubectl-scale", Action: storage.DriftReverted}); err != nil {
				b.Fatal(err)
			}
		}
	}
	h, err := ui.New(ui.Config{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	token, _, err := store.CreateLoginToken("admin", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/login?token="+token, nil))
	cookie := rec.Result().Cookies()[0]

	render := func() (time.Duration, int) {
		req := httptest.NewRequest(http.MethodGet, "/ui/", nil)
		req.AddCookie(cookie)
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, req)
		d := time.Since(start)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "1000 of 1000 apps") {
			b.Fatalf("apps page: %d\n%.500s", w.Code, w.Body.String())
		}
		return d, w.Body.Len()
	}
	cold, size := render() // reads the 100 commit subjects from git
	peer := func() time.Duration {
		start := time.Now()
		apps, err := store.Apps()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(apps); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}

	var pages, jsons []time.Duration
	b.ResetTimer()
	for b.Loop() {
		d, _ := render()
		pages = append(pages, d)
		jsons = append(jsons, peer())
	}
	b.StopTimer()
	p50, p99 := quantile(pages, 0.50), quantile(pages, 0.99)
	j50, j99 := quantile(jsons, 0.50), quantile(jsons, 0.99)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(j99), "json-p99-ms")
	b.ReportMetric(float64(p50)/float64(j50), "p50/json")
	b.ReportMetric(float64(p99)/float64(j99), "p99/json")
	b.Logf("apps page with %d apps (%d KiB): p50 %s, p99 %s over %d renders (first render, commit subjects from git: %s); JSON of the same apps p50 %s, p99 %s; page/JSON %.1fx at p50, %.1fx at p99; goal p99 < 100ms",
		benchApps, size>>10, p50, p99, len(pages), cold, j50, j99, float64(p50)/float64(j50), float64(p99)/float64(j99))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

type benchCommit struct{ repo, sha string }

// benchRepos creates repos with commits made by the git CLI and returns
// every commit.
func benchRepos(b *testing.B, store *storage.Store, repos, perRepo int) []benchCommit {
	ctx := context.Background()
	var out []benchCommit
	for r := range repos {
		name := fmt.Sprintf("team/repo-%02d", r)
		if _, err := store.CreateRepo(ctx, storage.Repo{Name: name}); err != nil {
			b.Fatal(err)
		}
		work := b.TempDir()
		git := func(args ...string) string {
			cmd := exec.Command("git", args...)
			cmd.Dir = work
			cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=CI", "GIT_AUTHOR_EMAIL=ci@example.com", "GIT_COMMITTER_NAME=CI", "GIT_COMMITTER_EMAIL=ci@example.com", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
			o, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("git %v: %v\n%s", args, err, o)
			}
			return strings.TrimSpace(string(o))
		}
		git("init", "-q", "-b", "main")
		for c := range perRepo {
			os.WriteFile(filepath.Join(work, "f"), []byte(fmt.Sprint(c)), 0o644)
			git("add", ".")
			git("commit", "-q", "-m", fmt.Sprintf("release %d.%d of %s", r, c, name))
			out = append(out, benchCommit{repo: name, sha: git("rev-parse", "HEAD")})
		}
		git("push", "-q", store.RepoPath(name), "HEAD:main")
		if _, err := store.RefreshRefs(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
	return out
}
