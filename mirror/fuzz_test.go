package mirror

// Fuzz targets for what a webhook sender and an operator control: the
// payloads and signatures of the webhook endpoints and the upstream URLs
// they are matched by.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// FuzzValidHMAC holds the signature check to its definition: true exactly
// when the header is "sha256=" and the hex of HMAC-SHA256(secret, body),
// and never with an empty secret.
func FuzzValidHMAC(f *testing.F) {
	sign := func(secret, body []byte) string {
		m := hmac.New(sha256.New, secret)
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	f.Add([]byte("s"), []byte(`{"ref":"refs/heads/main"}`), sign([]byte("s"), []byte(`{"ref":"refs/heads/main"}`)))
	f.Add([]byte("s"), []byte("x"), "sha256=")
	f.Add([]byte(""), []byte("x"), sign(nil, []byte("x")))
	f.Add([]byte("s"), []byte("x"), "sha1=00")
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		got := validHMAC(secret, body, header)
		m := hmac.New(sha256.New, secret)
		m.Write(body)
		hexSig, ok := strings.CutPrefix(header, "sha256=")
		sig, err := hex.DecodeString(hexSig)
		want := len(secret) > 0 && ok && err == nil && bytes.Equal(sig, m.Sum(nil))
		if got != want {
			t.Fatalf("validHMAC(%q, %q, %q) = %v, want %v", secret, body, header, got, want)
		}
		if len(secret) > 0 && !validHMAC(secret, body, sign(secret, body)) {
			t.Fatalf("the right signature of %q is refused", body)
		}
	})
}

// FuzzParseUpstream: an accepted URL never carries a password, parses
// again to itself, and matches webhooks by a key that holds no user.
func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{
		"https://github.com/org/app.git", "git@github.com:org/app.git", "ssh://git@host:2222/a/b.git",
		"https://user:pw@host/x", "file:///srv/git/app.git", "git://h/p", "-oProxyCommand=x", "http://[::1]:80/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		up, err := ParseUpstream(raw)
		if err != nil {
			if strings.Contains(raw, "://") && strings.Contains(raw, "@") && strings.Contains(err.Error(), raw) {
				t.Fatalf("the error repeats a URL that may hold a secret: %v", err)
			}
			return
		}
		again, err := ParseUpstream(up.URL)
		if err != nil || again.URL != up.URL || again.Key() != up.Key() {
			t.Fatalf("%q parses to %q, which parses to %+v (%v)", raw, up.URL, again, err)
		}
		if strings.HasPrefix(up.URL, "-") {
			t.Fatalf("%q becomes %q, an option to git", raw, up.URL)
		}
		if up.User != "" && strings.HasPrefix(up.Key(), strings.ToLower(up.User)+"@") {
			t.Fatalf("key %q holds the user", up.Key())
		}
	})
}

// webhookFixture is a manager with one mirror, m, of
// https://github.com/org/app.git whose webhook secret is "hook-secret".
func webhookFixture(f *testing.F) http.Handler {
	dir := f.TempDir()
	log := slog.New(slog.DiscardHandler)
	store, err := storage.Open(context.Background(), filepath.Join(dir, "data"), &storage.Options{Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	if _, err := store.CreateRepo(context.Background(), storage.Repo{Name: "m"}); err != nil {
		f.Fatal(err)
	}
	if err := store.CreateMirror(storage.Mirror{Repo: "m", Upstream: "https://github.com/org/app.git", Interval: time.Hour}); err != nil {
		f.Fatal(err)
	}
	if err := store.WriteCredentials(store.CredentialDir("mirror", "m"), "m", map[string][]byte{CredWebhookSecret: []byte("hook-secret\n")}); err != nil {
		f.Fatal(err)
	}
	m, err := New(Config{Store: store, Logger: log, SyncTimeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	f.Cleanup(func() { cancel(); <-done })
	return m.WebhookHandler()
}

// FuzzWebhook posts arbitrary payloads with arbitrary signatures to each
// endpoint: the handler never panics or fails with a server error, and
// accepts (202) only a payload signed with the mirror's secret.
func FuzzWebhook(f *testing.F) {
	h := webhookFixture(f)
	github := []byte(`{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/org/app.git"}}`)
	gitlab := []byte(`{"project":{"git_http_url":"https://github.com/org/app.git"}}`)
	sign := func(body []byte) string {
		m := hmac.New(sha256.New, []byte("hook-secret"))
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	f.Add(uint8(0), github, sign(github))
	f.Add(uint8(0), github, "sha256=00")
	f.Add(uint8(1), gitlab, "hook-secret")
	f.Add(uint8(1), gitlab, "wrong")
	f.Add(uint8(2), []byte("{}"), sign([]byte("{}")))
	f.Add(uint8(0), []byte(`{"repository":[]}`), "")
	f.Add(uint8(0), []byte(`not json`), "")
	f.Fuzz(func(t *testing.T, kind uint8, body []byte, sig string) {
		if strings.ContainsAny(sig, "\r\n\x00") {
			return // not a header value an HTTP client can send
		}
		path, header := "/hooks/github", "X-Hub-Signature-256"
		switch kind % 3 {
		case 1:
			path, header = "/hooks/gitlab", "X-Gitlab-Token"
		case 2:
			path, header = "/hooks/generic/m", "X-Fjord-Signature-256"
		}
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		r.Header.Set(header, sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusAccepted:
			signed := sig == sign(body) || strings.EqualFold(sig, sign(body))
			if kind%3 == 1 {
				signed = sig == "hook-secret"
			}
			if !signed {
				t.Fatalf("%s accepted %q with signature %q", path, body, sig)
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
		default:
			b, _ := io.ReadAll(w.Body)
			t.Fatalf("%s answered %d to %q: %s", path, w.Code, body, b)
		}
	})
}
