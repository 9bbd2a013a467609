package helmrepo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fjordhq/fjord/storage"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/repo"
)

// Chart returns the path of a local archive of chart name from the Helm
// repository at repoURL in the version that version names (exact, a semver
// range, or empty for the newest stable one), and that exact version. It
// reads only local copies when they answer: a version is resolved against
// the last index read, and a kept archive is never fetched again, so it
// works while the repository is down. The file does not change once
// returned.
//
// An unknown repoURL is mirrored from now on if it answers without
// credentials; one that wants credentials fails with an error that says to
// add it with `fjord helmrepo add` first.
func (m *Manager) Chart(ctx context.Context, repoURL, name, version string) (path, resolved string, err error) {
	fetched := false
	defer func() {
		switch {
		case err != nil:
			m.metrics.charts.WithLabelValues("failed").Inc()
		case fetched:
			m.metrics.charts.WithLabelValues("fetched").Inc()
		default:
			m.metrics.charts.WithLabelValues("local").Inc()
		}
	}()
	u, err := NormalizeURL(repoURL)
	if err != nil {
		return "", "", err
	}
	if err := checkChartName(name, isOCI(u)); err != nil {
		return "", "", fmt.Errorf("chart from %s: %w", u, err)
	}
	version = strings.TrimSpace(version)
	r, err := m.repoFor(ctx, u, name)
	if err != nil {
		return "", "", err
	}
	// An exact version kept already needs nothing else, not even an index.
	if isExact(version) {
		if p, ok := m.kept(r, name, version); ok {
			return p, version, nil
		}
	}
	if isOCI(u) {
		return m.ociChart(ctx, r, name, version, &fetched)
	}
	cv, err := m.resolveHTTP(ctx, r, name, version)
	if err != nil {
		return "", "", err
	}
	if p, ok := m.kept(r, name, cv.Version); ok {
		return p, cv.Version, nil
	}
	v, err := m.do(ctx, "chart\x00"+r.Name+"\x00"+name+"\x00"+cv.Version, func() (any, error) {
		if p, ok := m.kept(r, name, cv.Version); ok {
			return p, nil
		}
		return m.download(context.WithoutCancel(ctx), r, name, cv)
	})
	if err != nil {
		return "", "", err
	}
	fetched = true
	return v.(string), cv.Version, nil
}

// repoFor returns the repository mirroring u, adding it when it is new.
func (m *Manager) repoFor(ctx context.Context, u, chart string) (storage.HelmRepo, error) {
	// A repository never read yet may be in its first read (being added):
	// wait for that below rather than read it a second time.
	if r, ok, err := m.byURL(u); err != nil || ok && !r.LastAttempt.IsZero() {
		return r, err
	}
	v, err := m.do(ctx, "add\x00"+u, func() (any, error) {
		if r, ok, err := m.byURL(u); err != nil || ok {
			return r, err
		}
		r, err := m.add(context.WithoutCancel(ctx), storage.HelmRepo{URL: u, Auto: true}, nil, chart)
		if err != nil {
			return r, err
		}
		m.log.Info("helm repository added by itself: an app names it", "helmrepo", r.Name, "url", u, "chart", chart)
		return r, nil
	})
	if err != nil {
		return storage.HelmRepo{}, err
	}
	return v.(storage.HelmRepo), nil
}

// resolveHTTP picks the index entry for name and version, reading the index
// again once when it is a little old and does not have what was asked for
// (a chart just published).
func (m *Manager) resolveHTTP(ctx context.Context, r storage.HelmRepo, name, version string) (*repo.ChartVersion, error) {
	idx, err := m.localIndex(r)
	if err != nil {
		if v, ok := m.keptWhileFailing(r, name, version); ok {
			return &repo.ChartVersion{Metadata: &chart.Metadata{Name: name, Version: v}}, nil
		}
		if idx, err = m.refreshIndex(ctx, r); err != nil {
			if v, ok := m.keptVersion(r, name, version, err); ok {
				return &repo.ChartVersion{Metadata: &chart.Metadata{Name: name, Version: v}}, nil
			}
			return nil, err
		}
	}
	cv, err := pick(idx, r, name, version)
	if err == nil || !errors.Is(err, ErrNoVersion) || time.Since(idx.modTime) < missRefetch {
		return cv, err
	}
	fresh, ferr := m.refreshIndex(ctx, r)
	if ferr != nil {
		return nil, fmt.Errorf("%w; reading the index again failed too: %w", err, ferr)
	}
	return pick(fresh, r, name, version)
}

// refreshIndex is Refresh for one caller that needs the index it reads.
func (m *Manager) refreshIndex(ctx context.Context, r storage.HelmRepo) (*index, error) {
	// The read is shared with other callers: one leaving must not stop it
	// (the timeout bounds it).
	if _, err := m.Refresh(context.WithoutCancel(ctx), r.Name); err != nil {
		return nil, err
	}
	return m.localIndex(r)
}

// pick resolves version of chart name in idx.
func pick(idx *index, r storage.HelmRepo, name, version string) (*repo.ChartVersion, error) {
	cvs, ok := idx.file.Entries[name]
	if !ok {
		names := make([]string, 0, len(idx.file.Entries))
		for n := range idx.file.Entries {
			names = append(names, n)
		}
		hint := ""
		if near := storage.Nearest(name, names); near != "" {
			hint = fmt.Sprintf("; did you mean %q?", near)
		}
		return nil, fmt.Errorf("chart %q is not in helm repository %s (index read %s)%s: %w", name, r.URL, idx.modTime.UTC().Format(time.RFC3339), hint, ErrNoVersion)
	}
	versions := make([]string, 0, len(cvs))
	for _, cv := range cvs {
		versions = append(versions, cv.Version)
	}
	v, err := resolve(versions, version)
	if err != nil {
		var nm *errNoMatch
		if errors.As(err, &nm) {
			return nil, fmt.Errorf("chart %q in helm repository %s has %s (index read %s): %w", name, r.URL, nm, idx.modTime.UTC().Format(time.RFC3339), ErrNoVersion)
		}
		return nil, fmt.Errorf("chart %q from %s: %w", name, r.URL, err)
	}
	i := slices.IndexFunc(cvs, func(cv *repo.ChartVersion) bool { return cv.Version == v })
	return cvs[i], nil
}

// keptVersion resolves version among the kept versions of chart name,
// for when there is no index (or tag list) here and none can be read
// (why): a replica promoted after the repository went down, or a data dir
// restored then, holds the kept archives and their records but not the
// index, which does not replicate. The newest kept version that fits is
// the one the app last rendered with unless the repository published a
// newer one since, which is not to be had anyway until it answers.
func (m *Manager) keptVersion(r storage.HelmRepo, name, version string, why error) (string, bool) {
	charts, err := m.store.HelmCharts(r.Name)
	if err != nil {
		return "", false
	}
	var versions []string
	for _, c := range charts {
		if c.Name == name {
			versions = append(versions, c.Version)
		}
	}
	v, err := resolve(versions, version)
	if err != nil {
		return "", false
	}
	if _, ok := m.kept(r, name, v); !ok {
		return "", false
	}
	m.log.Warn("helm repository has no index here and cannot be read; resolved the version among the charts kept", "helmrepo", r.Name, "chart", name, "want", version, "version", v, "err", why)
	return v, true
}

// keptWhileFailing is keptVersion for a repository with no index (or tag
// list) here whose last read failed within its backoff: a render does
// not wait on a repository that is down (up to the timeout, when it does
// not answer at all) only to fall back to the kept charts after.
func (m *Manager) keptWhileFailing(r storage.HelmRepo, name, version string) (string, bool) {
	if r.Failures == 0 || time.Since(r.LastAttempt) >= backoff(r.Failures) {
		return "", false
	}
	return m.keptVersion(r, name, version, fmt.Errorf("its last read failed %s ago: %s", time.Since(r.LastAttempt).Round(time.Second), r.LastError))
}

// chartPath is where version of chart name of repository r is kept. Both
// are checked to be single safe path segments before.
func (m *Manager) chartPath(r storage.HelmRepo, name, version string) (string, error) {
	if err := checkChartName(name, isOCI(r.URL)); err != nil {
		return "", err
	}
	if err := checkVersion(version); err != nil {
		return "", err
	}
	p := m.store.HelmChartPath(r.Name, fileName(name)+"-"+version+".tgz")
	dir := filepath.Dir(p)
	if filepath.Dir(p) != dir {
		return "", fmt.Errorf("chart %q version %q does not make a file name inside the repository's directory", name, version)
	}
	return p, nil
}

// kept returns the local archive of a chart version, if fjord keeps it.
func (m *Manager) kept(r storage.HelmRepo, name, version string) (string, bool) {
	if _, err := m.store.HelmChart(r.Name, name, version); err != nil {
		return "", false
	}
	p, err := m.chartPath(r, name, version)
	if err != nil {
		return "", false
	}
	if _, err := os.Stat(p); err != nil {
		return "", false
	}
	return p, true
}

// download fetches the archive of index entry cv, checks it and keeps it.
func (m *Manager) download(ctx context.Context, r storage.HelmRepo, name string, cv *repo.ChartVersion) (string, error) {
	what := fmt.Sprintf("chart %s %s from helm repository %q", name, cv.Version, r.Name)
	if cv.Name != name {
		return "", fmt.Errorf("%s: the index entry names chart %q", what, cv.Name)
	}
	if _, err := m.chartPath(r, name, cv.Version); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if len(cv.URLs) == 0 {
		return "", fmt.Errorf("%s: the index gives no URL for it", what)
	}
	ref, err := repo.ResolveReferenceURL(r.URL, cv.URLs[0])
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	cu, err := url.Parse(ref)
	if err != nil || (cu.Scheme != "https" && cu.Scheme != "http") {
		return "", fmt.Errorf("%s: the index's URL %q is not http(s)", what, cv.URLs[0])
	}
	c, err := m.credentials(r)
	if err != nil {
		return "", err
	}
	g, err := m.getter(r, c)
	if err != nil {
		return "", err
	}
	if err := m.acquire(ctx); err != nil {
		return "", err
	}
	data, err := get(ctx, g, ref)
	m.release()
	if err != nil {
		return "", fmt.Errorf("%s: download %s: %w", what, cu.Redacted(), classify(err, c))
	}
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	if want := strings.TrimPrefix(strings.ToLower(cv.Digest), "sha256:"); want != "" && want != got {
		return "", fmt.Errorf("%s: %w: the index says sha256:%s, the archive at %s is sha256:%s; nothing was kept (a half-finished publish, or the archive was replaced: ask the repository's owner)", what, ErrDigest, want, cu.Redacted(), got)
	}
	if cv.Digest == "" {
		m.log.Warn("helm repository index gives no digest for a chart; kept unchecked", "helmrepo", r.Name, "chart", name, "version", cv.Version, "sha256", got)
	}
	return m.keep(r, name, cv.Version, data, got)
}

// keep checks that data is a chart archive of name at version, writes it
// to its place (temp file, fsync, rename) and records it.
func (m *Manager) keep(r storage.HelmRepo, name, version string, data []byte, digest string) (string, error) {
	what := fmt.Sprintf("chart %s %s from helm repository %q", name, version, r.Name)
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("%s is not a chart Helm can load; nothing was kept: %w", what, err)
	}
	// An OCI chart path's last segment is the chart's own name.
	if ch.Metadata == nil || ch.Metadata.Name != path.Base(name) || ch.Metadata.Version != version {
		var gotName, gotVersion string
		if ch.Metadata != nil {
			gotName, gotVersion = ch.Metadata.Name, ch.Metadata.Version
		}
		return "", fmt.Errorf("%s: the archive holds chart %q version %q; nothing was kept", what, gotName, gotVersion)
	}
	p, err := m.chartPath(r, name, version)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	// Through storage, so the archive replicates with its record: a
	// promoted replica renders from it with the repository down.
	rec := storage.HelmChart{Repo: r.Name, Name: name, Version: version, Digest: digest, Size: int64(len(data)), Fetched: time.Now().UTC()}
	if err := m.store.KeepHelmChart(rec, filepath.Base(p), data); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	m.log.Info("chart kept", "helmrepo", r.Name, "chart", name, "version", version, "sha256", digest, "bytes", len(data))
	return p, nil
}

// writeFile writes data to p atomically: a reader sees no file or all of it.
func writeFile(p string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
