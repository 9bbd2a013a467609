package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// DefaultUILoginUser is the user `fjord ui login` logs in without --user:
// the admin that --admin-key registers.
const DefaultUILoginUser = "admin"

// UILoginTTL is how long a one-time web UI login link is good for.
const UILoginTTL = 10 * time.Minute

// UILoginRequest is the body of POST /v1/ui/login.
type UILoginRequest struct {
	// User is the fjord user the session belongs to; empty means
	// DefaultUILoginUser.
	User string `json:"user,omitempty"`
}

// UILogin is a one-time login link to the web UI.
type UILogin struct {
	URL     string    `json:"url"`
	User    string    `json:"user"`
	Admin   bool      `json:"admin"`
	Expires time.Time `json:"expires"`
}

func (s *Server) uiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/ui/login", s.uiLogin)
}

// uiLogin mints a one-time login token and answers the link that redeems
// it on the HTTP listener. Only the holder of the admin socket gets it.
func (s *Server) uiLogin(w http.ResponseWriter, r *http.Request) {
	var req UILoginRequest
	if !decode(w, r, &req) {
		return
	}
	if req.User == "" {
		req.User = DefaultUILoginUser
	}
	u, err := s.store.User(req.User)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) && req.User == DefaultUILoginUser {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q: name the user to log in as with --user NAME (fjord user list shows them)", req.User))
			return
		}
		s.fail(w, err)
		return
	}
	token, lt, err := s.store.CreateLoginToken(u.Name, UILoginTTL)
	if err != nil {
		s.fail(w, err)
		return
	}
	link := url.URL{Scheme: "http", Host: browsable(s.info.HTTPAddr), Path: "/ui/login", RawQuery: "token=" + url.QueryEscape(token)}
	s.log.Info("ui login link issued", "user", u.Name, "expires", lt.Expires)
	writeJSON(w, http.StatusCreated, UILogin{URL: link.String(), User: u.Name, Admin: u.Admin, Expires: lt.Expires})
}

// browsable turns a listen address into one a browser on this machine can
// open: a wildcard host becomes loopback.
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// UILogin asks for a one-time web UI login link for user ("" for the
// default admin).
func (c *Client) UILogin(ctx context.Context, user string) (UILogin, error) {
	var out UILogin
	err := c.do(ctx, http.MethodPost, "/v1/ui/login", UILoginRequest{User: user}, &out)
	return out, err
}
