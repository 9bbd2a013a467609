package helmrepo_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
	"github.com/fjordhq/fjord/storage"
)

// follow applies every change of from to to, as a follower does, with the
// files the primary sends beside them.
func follow(t *testing.T, from, to *storage.Store) {
	t.Helper()
	changes, err := from.ChangesSince(to.Position(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		files, err := from.ChangeFiles(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := to.ApplyChange(context.Background(), c.Raw, files, nil, nil); err != nil {
			t.Fatalf("apply change %d: %v", c.Pos, err)
		}
	}
}

// TestPromotedReplicaRendersWhileRepoIsDown keeps charts on a primary
// (from an HTTP repository and an OCI registry), replicates its changes to
// a second store, stops both repositories and asks a manager on the
// replica for the charts: the kept archives answer exact versions and
// ranges alike, though the replica never read an index or a tag list.
func TestPromotedReplicaRendersWhileRepoIsDown(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	srv := helmrepotest.NewServer(t, helmrepotest.Options{})
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0"} {
		srv.Publish(helmrepotest.Chart("demo", v))
	}
	reg := helmrepotest.NewRegistry(t, helmrepotest.Options{})
	for _, v := range []string{"0.1.0", "0.2.0"} {
		reg.Push(helmrepotest.Chart("podinfo", v))
	}
	m := e.managerTLS(t, reg)
	for _, want := range []string{"~1.0", "^1"} {
		if _, _, err := m.Chart(ctx, srv.URL(), "demo", want); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := m.Chart(ctx, reg.URL(), "podinfo", "0.x"); err != nil {
		t.Fatal(err)
	}

	replica, err := storage.Open(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	follow(t, e.store, replica)
	srv.Close()
	reg.Close()

	promoted := (&env{store: replica, logs: e.logs}).managerTLS(t, reg)
	for _, tc := range []struct{ url, chart, want, resolved string }{
		{srv.URL(), "demo", "^1", "1.1.0"},
		{srv.URL(), "demo", "", "1.1.0"},
		{srv.URL(), "demo", "~1.0", "1.0.0"},
		{srv.URL(), "demo", "1.0.0", "1.0.0"},
		{reg.URL(), "podinfo", "0.x", "0.2.0"},
		{reg.URL(), "podinfo", "0.2.0", "0.2.0"},
	} {
		p, got, err := promoted.Chart(ctx, tc.url, tc.chart, tc.want)
		if err != nil {
			t.Fatalf("replica: Chart(%s, %q) with the repository down: %v", tc.chart, tc.want, err)
		}
		if got != tc.resolved {
			t.Errorf("replica: Chart(%s, %q) = %s, want %s", tc.chart, tc.want, got, tc.resolved)
		}
		if !strings.HasPrefix(p, replica.HelmDir("")) {
			t.Errorf("replica: Chart(%s, %q) is at %s, not in the replica's data", tc.chart, tc.want, p)
		}
		loadChart(t, p, tc.chart, tc.resolved)
	}
	// What was never kept cannot come from a repository that is down.
	if _, _, err := promoted.Chart(ctx, srv.URL(), "demo", "^2"); err == nil {
		t.Error("replica: a range no kept version fits resolved with the repository down")
	}
}
