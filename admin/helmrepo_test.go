package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/helmrepo"
	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
	"github.com/fjordhq/fjord/storage"
)

// A Helm repository an app takes its chart from is not deleted without
// --force, and the refusal names the app.
func TestDeleteHelmRepoInUse(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	store, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "data"), &storage.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	charts, err := helmrepo.New(helmrepo.Config{Store: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	repo := helmrepotest.NewServer(t, helmrepotest.Options{})
	repo.Publish(helmrepotest.Chart("hello", "1.0.0"))
	if _, err := charts.Add(context.Background(), storage.HelmRepo{URL: repo.URL(), Name: "hello"}, nil); err != nil {
		t.Fatal(err)
	}
	manifest := "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: web\nspec:\n  sources:\n  - repoURL: " + repo.URL() + "/\n    chart: hello\n    targetRevision: 1.0.0\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: default\n"
	if _, err := store.PutApp("web", manifest, storage.AppMeta{}); err != nil {
		t.Fatal(err)
	}
	h := NewServer(Config{Store: store, Logger: log, HelmRepos: charts}).http.Handler
	del := func(force string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/v1/helmrepos?repo="+url.QueryEscape(repo.URL())+"&force="+force, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := del("false"); code != http.StatusConflict || !strings.Contains(body, "apps web") || !strings.Contains(body, "--force") {
		t.Fatalf("delete in use: %d %s", code, body)
	}
	if code, body := del("true"); code != http.StatusOK {
		t.Fatalf("delete --force: %d %s", code, body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/helmrepos", nil))
	var list []helmrepo.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != 0 {
		t.Fatalf("list after delete: %s (%v)", rec.Body, err)
	}
}

// An app naming an OCI registry without a scheme (as Argo CD allows, and
// the reconciler renders) holds the registry from deletion too.
func TestDeleteOCIRepoInUseWithoutScheme(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	store, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "data"), &storage.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg := helmrepotest.NewRegistry(t, helmrepotest.Options{})
	reg.Push(helmrepotest.Chart("hello", "1.0.0"))
	charts, err := helmrepo.New(helmrepo.Config{Store: store, Logger: log, TLSConfig: reg.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := charts.Add(context.Background(), storage.HelmRepo{URL: reg.URL(), Name: "oci"}, nil); err != nil {
		t.Fatal(err)
	}
	manifest := "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: web\nspec:\n  source:\n    repoURL: " + reg.Host() + "/charts\n    chart: hello\n    targetRevision: 1.0.0\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: default\n"
	if _, err := store.PutApp("web", manifest, storage.AppMeta{}); err != nil {
		t.Fatal(err)
	}
	h := NewServer(Config{Store: store, Logger: log, HelmRepos: charts}).http.Handler
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/v1/helmrepos?repo=oci&force=false", nil))
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "apps web") {
		t.Fatalf("delete of a registry an app names without a scheme: %d %s", rec.Code, rec.Body)
	}
}
