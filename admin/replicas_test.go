package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

// TestWriteGate: on a member that is not the primary, reads and the POSTs
// that write nothing (promote) pass the gate; every write is refused with
// 503 and the gate's message naming the primary, and changes nothing.
func TestWriteGate(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	store, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "data"), &storage.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.CreateRepo(context.Background(), storage.Repo{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	const why = "read-only replica: b is a replica; push to the primary a at 10.0.0.1:2222"
	h := NewServer(Config{Store: store, Logger: log, WriteGate: func() error { return errors.New(why) }}).http.Handler
	for _, c := range []struct {
		method, path, body string
		refused            bool
	}{
		{http.MethodGet, "/v1/repos", "", false},
		{http.MethodPost, "/v1/replicas/promote", `{"id":"b","force":true}`, false},
		{http.MethodPost, "/v1/repos", `{"name":"other"}`, true},
		{http.MethodPatch, "/v1/repos/app", `{"description":"d"}`, true},
		{http.MethodDelete, "/v1/repos/app", "", true},
		{http.MethodDelete, "/v1/replicas/promote", "", true},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		gated := w.Code == http.StatusServiceUnavailable && strings.Contains(w.Body.String(), why)
		if gated != c.refused {
			t.Errorf("%s %s: %d %s; want refused by the gate: %v", c.method, c.path, w.Code, w.Body, c.refused)
		}
	}
	if repos, err := store.Repos(); err != nil || len(repos) != 1 || repos[0].Name != "app" {
		t.Fatalf("repos after refused writes: %+v %v; want app alone", repos, err)
	}
}
