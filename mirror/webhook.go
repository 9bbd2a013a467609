package mirror

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// maxWebhookBody bounds a webhook payload; GitHub caps theirs at 25 MB.
const maxWebhookBody = 25 << 20

// WebhookHandler serves the webhook endpoints:
//
//	POST /hooks/github         X-Hub-Signature-256: sha256=HMAC(secret, body)
//	POST /hooks/gitlab         X-Gitlab-Token: secret
//	POST /hooks/generic/NAME   X-Fjord-Signature-256: sha256=HMAC(secret, body)
//
// GitHub and GitLab push events are matched to mirrors by normalized
// upstream URL. A missing or wrong signature gets 401 and triggers
// nothing; a verified one gets 202 and the sync runs in the background.
func (m *Manager) WebhookHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/github", m.githubHook)
	mux.HandleFunc("POST /hooks/gitlab", m.gitlabHook)
	mux.HandleFunc("POST /hooks/generic/{name...}", m.genericHook)
	return mux
}

func (m *Manager) githubHook(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var p struct {
		Repository struct {
			CloneURL string `json:"clone_url"`
			SSHURL   string `json:"ssh_url"`
			GitURL   string `json:"git_url"`
			HTMLURL  string `json:"html_url"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "payload is not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	sig := r.Header.Get("X-Hub-Signature-256")
	m.dispatch(w, r, []string{p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.GitURL, p.Repository.HTMLURL},
		func(secret []byte) bool { return validHMAC(secret, body, sig) })
}

func (m *Manager) gitlabHook(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var p struct {
		Project struct {
			SSH    string `json:"git_ssh_url"`
			HTTP   string `json:"git_http_url"`
			WebURL string `json:"web_url"`
		} `json:"project"`
		Repository struct {
			SSH  string `json:"git_ssh_url"`
			HTTP string `json:"git_http_url"`
			URL  string `json:"url"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "payload is not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	token := r.Header.Get("X-Gitlab-Token")
	m.dispatch(w, r, []string{p.Project.SSH, p.Project.HTTP, p.Project.WebURL, p.Repository.SSH, p.Repository.HTTP, p.Repository.URL},
		func(secret []byte) bool {
			return token != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(string(secret))), []byte(token)) == 1
		})
}

func (m *Manager) genericHook(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	sig := r.Header.Get("X-Fjord-Signature-256")
	mir, err := m.store.Mirror(name)
	secret, serr := m.webhookSecret(name)
	if err != nil || serr != nil || !validHMAC(secret, body, sig) {
		// The same answer for an unknown mirror as for a bad signature.
		http.Error(w, "signature missing or wrong (X-Fjord-Signature-256: sha256=HMAC-SHA256 of the body with the mirror's webhook secret)", http.StatusUnauthorized)
		return
	}
	m.Trigger(mir.Repo, "webhook")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, "sync of "+mir.Repo+" queued\n")
}

// dispatch triggers every mirror of one of urls whose secret verifies.
func (m *Manager) dispatch(w http.ResponseWriter, r *http.Request, urls []string, verify func(secret []byte) bool) {
	keys := map[string]bool{}
	for _, u := range urls {
		if k := KeyOf(u); k != "" {
			keys[k] = true
		}
	}
	mirrors, err := m.store.Mirrors()
	if err != nil {
		http.Error(w, "cannot list mirrors", http.StatusInternalServerError)
		return
	}
	var matched, triggered []string
	for _, mir := range mirrors {
		if !keys[KeyOf(mir.Upstream)] {
			continue
		}
		matched = append(matched, mir.Repo)
		secret, err := m.webhookSecret(mir.Repo)
		if err != nil || !verify(secret) {
			continue
		}
		m.Trigger(mir.Repo, "webhook")
		triggered = append(triggered, mir.Repo)
	}
	switch {
	case len(triggered) > 0:
		m.log.Info("webhook accepted", "path", r.URL.Path, "mirrors", triggered)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "sync queued: "+strings.Join(triggered, ", ")+"\n")
	case len(matched) > 0:
		m.log.Warn("webhook refused: signature missing or wrong", "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, "signature missing or wrong for the mirrors of this repository (set the webhook secret to the mirror's --webhook-secret-file)", http.StatusUnauthorized)
	default:
		// Said without a signature check, so it names nothing.
		http.Error(w, "signature missing or wrong, or no mirror of this repository", http.StatusUnauthorized)
	}
}

func (m *Manager) webhookSecret(repo string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(m.store.CredentialDir("mirror", repo), CredWebhookSecret))
	if err != nil {
		return nil, err
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		http.Error(w, "cannot read body: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

// validHMAC checks a "sha256=HEX" signature of body in constant time.
func validHMAC(secret, body []byte, header string) bool {
	if len(secret) == 0 {
		return false
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
