package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

// fuzzEndpoints are the admin API's writes that take a JSON body, bar the
// backup (its body names a directory to write to). Mirrors and apps have
// no service behind them here, so they test the decoding in front of the
// 503.
var fuzzEndpoints = []struct{ method, path string }{
	{http.MethodPost, "/v1/repos"},
	{http.MethodPatch, "/v1/repos/app"},
	{http.MethodPost, "/v1/users"},
	{http.MethodPut, "/v1/grants"},
	{http.MethodPost, "/v1/mirrors"},
	{http.MethodPost, "/v1/pushmirrors"},
	{http.MethodPost, "/v1/apps"},
	{http.MethodPost, "/v1/apps/sync"},
	{http.MethodPost, "/v1/signkeys"},
	{http.MethodPost, "/v1/notifiers"},
}

// FuzzRequestDecoding sends arbitrary bodies to every admin write on a
// real store: no request is answered with a server error or a panic, and
// every refusal is a JSON body with an error message for the CLI.
func FuzzRequestDecoding(f *testing.F) {
	log := slog.New(slog.DiscardHandler)
	store, err := storage.Open(context.Background(), filepath.Join(f.TempDir(), "data"), &storage.Options{Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	if _, err := store.CreateRepo(context.Background(), storage.Repo{Name: "app"}); err != nil {
		f.Fatal(err)
	}
	h := NewServer(Config{Store: store, Logger: log}).http.Handler

	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ci@example"
	for i, body := range []string{
		`{"name":"team/app","anonRead":true,"description":"d"}`,
		`{"anonRead":false,"description":"new"}`,
		`{"name":"ci","admin":false,"keys":["` + key + `"]}`,
		`{"user":"ci","repo":"app","access":"write"}`,
		`{"repo":"m","upstream":"https://github.com/org/app.git"}`,
		`{"repo":"app","url":"ssh://git@host/x.git"}`,
		`{"manifest":"apiVersion: argoproj.io/v1alpha1\nkind: Application\n"}`,
		`{"name":"app"}`,
		`{"name":"ci","public":"` + key + `"}`,
		`{"name":"chat","url":"https://hooks.example.com/x","on":["deployed"],"secret":"s"}`,
	} {
		f.Add(uint8(i), []byte(body))
	}
	f.Add(uint8(0), []byte(`{"name":"x","extra":1}`))
	f.Add(uint8(3), []byte(`{"user":"nobody","repo":"../x","access":"admin"}`))
	f.Add(uint8(2), []byte(`{"name":"ci","keys":["not a key"]}`))
	f.Add(uint8(0), []byte(`[`))
	f.Add(uint8(8), []byte(`{"name":"k","public":"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY BLOCK-----"}`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		e := fuzzEndpoints[int(which)%len(fuzzEndpoints)]
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(e.method, e.path, bytes.NewReader(body)))
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", e.method, e.path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var eb errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error == "" {
				t.Fatalf("%s %s %q: %d with body %q, not a JSON error", e.method, e.path, body, w.Code, w.Body)
			}
		}
	})
}
