package main_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestUILogin runs `fjord ui login` against a real server and opens the
// link it prints: the first visit logs in (a session cookie and a redirect
// to the apps page), the second is refused; a user that does not exist is
// an error naming the fix.
func TestUILogin(t *testing.T) {
	s := newSession(t)
	s.start("--admin-key", s.key+".pub")

	out := s.mustFjord("ui", "login")
	if !strings.Contains(out, "as admin (admin)") {
		t.Fatalf("ui login: %q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	link := lines[len(lines)-1]
	if !strings.HasPrefix(link, "http://"+s.http+"/ui/login?token=") {
		t.Fatalf("ui login link %q, want one on the HTTP listener %s", link, s.http)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != "fjord_session" {
		t.Fatalf("opening the link: %s, cookies %v", resp.Status, resp.Cookies())
	}
	resp, err = noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("opening the link twice: %s", resp.Status)
	}

	var l struct {
		URL, User string
		Admin     bool
	}
	if err := json.Unmarshal([]byte(s.mustFjord("ui", "login", "-o", "json")), &l); err != nil || l.User != "admin" || !l.Admin || l.URL == "" {
		t.Fatalf("ui login -o json: %+v %v", l, err)
	}
	if out, err := s.fjord("ui", "login", "--user", "nobody"); err == nil || !strings.Contains(out, `user "nobody"`) {
		t.Fatalf("ui login --user nobody: %v %q", err, out)
	}
}
