package ui

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"

	"github.com/fjordhq/fjord/storage"
)

// cookieName is the session cookie. The __Host- prefix would need
// Secure, which a loopback http:// listener cannot set.
const cookieName = "fjord_session"

// viewer is the logged-in user of a request.
type viewer struct {
	User storage.User
	sess storage.Session
	id   string
}

// Admin reports whether the viewer may sync apps.
func (v *viewer) Admin() bool { return v != nil && v.User.Admin }

// CSRF is the token forms of this session carry.
func (v *viewer) CSRF() string { return v.sess.CSRF }

// mayRead reports whether the viewer may see what comes from repo: admins
// see everything; others what storage grants them (or anonymous read).
func (h *Handler) mayRead(v *viewer, repo string) bool {
	if v.User.Admin {
		return true
	}
	if repo == "" {
		return false
	}
	return h.store.AccessFor(&v.User, repo) >= storage.AccessRead
}

// authed wraps a page that needs a session. Without one the answer is the
// login page with 401, never the page's data.
func (h *Handler) authed(fn func(http.ResponseWriter, *http.Request, *viewer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := h.viewer(r)
		if err != nil {
			if !errors.Is(err, storage.ErrNoSession) {
				h.log.Warn("ui: session", "err", err)
			}
			h.clearCookie(w)
			h.render(w, http.StatusUnauthorized, "login", page{Title: "Log in"})
			return
		}
		fn(w, r, v)
	})
}

// viewer reads the session cookie and its user; a session whose user was
// deleted is no session.
func (h *Handler) viewer(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, storage.ErrNoSession
	}
	sess, err := h.store.Session(c.Value)
	if err != nil {
		return nil, err
	}
	u, err := h.store.User(sess.User)
	if err != nil {
		return nil, storage.ErrNoSession
	}
	return &viewer{User: u, sess: sess, id: c.Value}, nil
}

// login redeems a one-time token from `fjord ui login`, sets the session
// cookie and sends the browser on to the apps page, so the token leaves
// the address bar at once. A missing, used or expired token gets the login
// page.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	if token == "" {
		h.render(w, http.StatusUnauthorized, "login", page{Title: "Log in"})
		return
	}
	id, sess, err := h.store.RedeemLoginToken(token, h.ttl)
	if err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, storage.ErrLoginToken):
		case errors.Is(err, storage.ErrReadOnly):
			// A follower replica: sessions come to it from the primary.
			msg += "; run `fjord ui login` and open its link on the primary: the session then works on every replica"
		default:
			h.log.Error("ui: login", "err", err)
			msg = "login failed; the server log says why"
		}
		h.render(w, http.StatusUnauthorized, "login", page{Title: "Log in", Data: msg})
		return
	}
	h.log.Info("ui: login", "user", sess.User)
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    id,
		Path:     Prefix,
		MaxAge:   int(h.ttl.Seconds()),
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil,
	})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !h.checkCSRF(w, r, v) {
		return
	}
	if err := h.store.DeleteSession(v.id); err != nil {
		h.log.Error("ui: logout", "err", err)
	}
	h.clearCookie(w)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

func (h *Handler) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// checkCSRF guards a form POST: the form must carry the session's token,
// and a browser that says where the request came from must say it came
// from this site. SameSite=Strict already keeps the cookie off cross-site
// requests; this holds even where a browser does not honour it.
func (h *Handler) checkCSRF(w http.ResponseWriter, r *http.Request, v *viewer) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		h.fail(w, r, v, http.StatusForbidden, "refused: the request came from another site ("+site+")")
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			h.fail(w, r, v, http.StatusForbidden, "refused: the request came from another origin")
			return false
		}
	}
	got := r.PostFormValue("csrf")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(v.sess.CSRF)) != 1 {
		h.fail(w, r, v, http.StatusForbidden, "refused: the form's CSRF token is missing or wrong; reload the page and try again")
		return false
	}
	return true
}
