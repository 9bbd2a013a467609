package helmrepo_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/helmrepo"
	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
	"github.com/fjordhq/fjord/storage"
)

func (e *env) managerTLS(t *testing.T, reg *helmrepotest.Registry) *helmrepo.Manager {
	t.Helper()
	m, err := helmrepo.New(helmrepo.Config{Store: e.store, Logger: slog.New(slog.NewTextHandler(e.logs, nil)), Timeout: 20 * time.Second, TLSConfig: reg.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestChartFromOCIRegistry(t *testing.T) {
	e := newEnv(t)
	reg := helmrepotest.NewRegistry(t, helmrepotest.Options{})
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0", "1.2.0+build.7"} {
		reg.Push(helmrepotest.Chart("podinfo", v))
	}
	reg.PushAt("team", helmrepotest.Chart("web", "0.2.0"))
	m := e.managerTLS(t, reg)
	ctx := context.Background()

	// A chart deeper in the registry (chart: team/web), kept apart from
	// the others; a path that climbs is refused.
	p, v, err := m.Chart(ctx, reg.URL(), "team/web", "")
	if err != nil || v != "0.2.0" {
		t.Fatalf("Chart(oci, team/web) = %s, %v", v, err)
	}
	loadChart(t, p, "web", "0.2.0")
	for _, bad := range []string{"team/../web", "/web", "team//web", "team/.web"} {
		if _, _, err := m.Chart(ctx, reg.URL(), bad, ""); err == nil || !strings.Contains(err.Error(), "chart name") {
			t.Errorf("Chart(oci, %q): %v; want a refused chart name", bad, err)
		}
	}

	for _, tc := range []struct{ want, resolved string }{
		{"", "2.0.0"},
		{"1.0.0", "1.0.0"},
		{"~1.1", "1.1.0"},
		{"1.2.0+build.7", "1.2.0+build.7"},
	} {
		p, got, err := m.Chart(ctx, reg.URL(), "podinfo", tc.want)
		if err != nil {
			t.Fatalf("Chart(oci, %q): %v", tc.want, err)
		}
		if got != tc.resolved {
			t.Errorf("Chart(oci, %q) resolved %s, want %s", tc.want, got, tc.resolved)
		}
		loadChart(t, p, "podinfo", tc.resolved)
	}
	list, err := m.List()
	if err != nil || len(list) != 1 || list[0].URL != reg.URL() || !list[0].Auto || len(list[0].Charts) != 5 {
		t.Fatalf("List = %+v, %v; want the registry added by itself with 5 charts", list, err)
	}
	for _, c := range list[0].Charts {
		if len(c.Digest) != 64 {
			t.Errorf("kept %s %s with digest %q", c.Name, c.Version, c.Digest)
		}
	}

	// A refresh lists the tags of every chart asked for again.
	if r, err := m.Refresh(ctx, list[0].Name); err != nil || r.LastError != "" {
		t.Fatalf("refresh of the registry: %v, %+v", err, r)
	}

	// The registry goes away: kept versions and the last tag list still
	// answer, in this manager and after a restart.
	reg.Close()
	for i, mm := range []*helmrepo.Manager{m, e.managerTLS(t, reg)} {
		if _, v, err := mm.Chart(ctx, reg.URL(), "podinfo", "^1.0.0"); err != nil || v != "1.2.0+build.7" {
			t.Errorf("manager %d, registry down: Chart(^1.0.0) = %s, %v", i, v, err)
		}
		if _, v, err := mm.Chart(ctx, reg.URL(), "podinfo", ""); err != nil || v != "2.0.0" {
			t.Errorf("manager %d, registry down: Chart() = %s, %v", i, v, err)
		}
	}
	if _, err := m.Refresh(ctx, list[0].Name); err == nil {
		t.Errorf("refresh of a registry that is down succeeded")
	}
}

func TestChartFromPrivateOCIRegistry(t *testing.T) {
	e := newEnv(t)
	const pass = "oci-Pa55word"
	reg := helmrepotest.NewRegistry(t, helmrepotest.Options{Username: "robot", Password: pass})
	reg.Push(helmrepotest.Chart("secret-app", "0.3.0"))
	m := e.managerTLS(t, reg)
	ctx := context.Background()

	_, _, err := m.Chart(ctx, reg.URL(), "secret-app", "")
	if !errors.Is(err, helmrepo.ErrCredentials) || !strings.Contains(err.Error(), "fjord helmrepo add "+reg.URL()) {
		t.Fatalf("a private registry not added yet: %v", err)
	}
	if list, _ := m.List(); len(list) != 0 {
		t.Fatalf("a private registry was added by itself: %+v", list)
	}
	if _, err := m.Add(ctx, storage.HelmRepo{URL: reg.URL()}, map[string][]byte{"username": []byte("robot"), "password": []byte("nope")}); !errors.Is(err, helmrepo.ErrCredentials) {
		t.Fatalf("Add with a wrong password: %v", err)
	}
	if _, err := m.Add(ctx, storage.HelmRepo{URL: reg.URL()}, map[string][]byte{"username": []byte("robot"), "password": []byte(pass)}); err != nil {
		t.Fatal(err)
	}
	p, v, err := m.Chart(ctx, reg.URL(), "secret-app", "0.x")
	if err != nil || v != "0.3.0" {
		t.Fatalf("Chart from the added private registry: %s, %v", v, err)
	}
	loadChart(t, p, "secret-app", "0.3.0")
	if strings.Contains(e.logs.String(), pass) {
		t.Errorf("the password is in the logs")
	}
}

func TestChartFromPlainHTTPRegistry(t *testing.T) {
	e := newEnv(t)
	reg := helmrepotest.NewRegistry(t, helmrepotest.Options{PlainHTTP: true})
	reg.Push(helmrepotest.Chart("plain", "0.1.0"))
	ctx := context.Background()
	// fjord speaks https unless told otherwise.
	if _, _, err := e.mgr.Chart(ctx, reg.URL(), "plain", ""); err == nil || !strings.Contains(err.Error(), "nothing was added") {
		t.Fatalf("an http-only registry over https: %v", err)
	}
	if _, err := e.mgr.Add(ctx, storage.HelmRepo{URL: "https://charts.example.com", PlainHTTP: true}, nil); err == nil || !strings.Contains(err.Error(), "oci://") {
		t.Errorf("--plain-http on an https repository: %v", err)
	}
	if _, err := e.mgr.Add(ctx, storage.HelmRepo{URL: reg.URL(), PlainHTTP: true}, nil); err != nil {
		t.Fatal(err)
	}
	p, v, err := e.mgr.Chart(ctx, reg.URL(), "plain", "")
	if err != nil || v != "0.1.0" {
		t.Fatalf("Chart over plain http: %s, %v", v, err)
	}
	loadChart(t, p, "plain", "0.1.0")
}
