package helmrepo_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/fjordhq/fjord/helmrepo"
	"github.com/fjordhq/fjord/helmrepo/helmrepotest"
	"github.com/fjordhq/fjord/storage"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/repo"
)

// BenchmarkChart compares what a render costs to get its chart: fjord's
// Chart from the kept copy (range resolved against the kept index) against
// the peer, the Helm SDK fetching the index and the archive on every
// render as `helm template --repo URL` does, from a repository on loopback
// (a far repository only widens the gap). Run with
// go test -run '^$' -bench BenchmarkChart ./helmrepo/
func BenchmarkChart(b *testing.B) {
	srv := helmrepotest.NewServer(b, helmrepotest.Options{})
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		srv.Publish(helmrepotest.Chart("demo", v))
	}
	b.Run("fjord-kept", func(b *testing.B) {
		st, err := storage.Open(context.Background(), b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		m, err := helmrepo.New(helmrepo.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if _, _, err := m.Chart(ctx, srv.URL(), "demo", "^1"); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if _, v, err := m.Chart(ctx, srv.URL(), "demo", "^1"); err != nil || v != "1.2.0" {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("helm-sdk-fetch", func(b *testing.B) {
		// The SDK keeps its index copy in Helm's cache dir while it works.
		b.Setenv("HELM_CACHE_HOME", b.TempDir())
		providers := getter.Providers{{Schemes: []string{"http", "https"}, New: getter.NewHTTPGetter}}
		g, err := getter.NewHTTPGetter()
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			u, err := repo.FindChartInRepoURL(srv.URL(), "demo", "^1", "", "", "", providers)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := g.Get(u); err != nil {
				b.Fatal(err)
			}
		}
	})
}
