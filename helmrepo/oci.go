package helmrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fjordhq/fjord/storage"
	"helm.sh/helm/v3/pkg/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// tagList is a chart's OCI tags as last listed, kept in tags/CHART.json:
// the OCI counterpart of index.yaml.
type tagList struct {
	Fetched time.Time `json:"fetched"`
	// Versions are the semver tags, "_" read back as "+", newest first.
	Versions []string `json:"versions"`
}

// registryRef is r's registry path without the scheme ("host/path").
func registryRef(r storage.HelmRepo) string { return strings.TrimPrefix(r.URL, "oci://") }

// authorizer is the ORAS client the registry client uses: r's credentials
// or none, never the Docker or Helm credential files of the user fjord runs
// as.
func (m *Manager) authorizer(r storage.HelmRepo, c credentials) *auth.Client {
	a := &auth.Client{
		Client: &http.Client{Transport: m.transport, Timeout: m.timeout},
		Cache:  auth.NewCache(),
	}
	a.SetUserAgent(userAgent)
	if !c.empty() {
		host := registryRef(r)
		if i := strings.IndexByte(host, '/'); i >= 0 {
			host = host[:i]
		}
		a.Credential = auth.StaticCredential(host, auth.Credential{Username: c.username, Password: c.password})
	}
	return a
}

// registryClient returns a Helm registry client for repository r.
func (m *Manager) registryClient(r storage.HelmRepo, c credentials) (*registry.Client, error) {
	a := m.authorizer(r, c)
	opts := []registry.ClientOption{
		registry.ClientOptHTTPClient(a.Client),
		registry.ClientOptAuthorizer(*a),
		// A file that does not exist: no ambient registry logins.
		registry.ClientOptCredentialsFile(filepath.Join(m.store.HelmDir(r.Name), "no-registry-logins.json")),
	}
	if r.PlainHTTP {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	cl, err := registry.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("helm repository %q: registry client: %w", r.Name, err)
	}
	return cl, nil
}

// classifyOCI is classify for ORAS errors, which carry the status code.
func classifyOCI(err error, c credentials) error {
	if err == nil {
		return nil
	}
	var er *errcode.ErrorResponse
	if errors.As(err, &er) && (er.StatusCode == http.StatusUnauthorized || er.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w (HTTP %d): %w", ErrCredentials, er.StatusCode, c.redactErr(err))
	}
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		// The registry asked for basic auth and there is none.
		return fmt.Errorf("%w (HTTP 401): %w", ErrCredentials, err)
	}
	return c.redactErr(err)
}

// inBackground runs fn in a goroutine so ctx can stop the wait (Helm's
// registry client takes no context; the HTTP timeout bounds it).
func inBackground[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	select {
	case res := <-ch:
		return res.v, res.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

func (m *Manager) tagsPath(r storage.HelmRepo, chart string) string {
	return filepath.Join(m.store.HelmDir(r.Name), "tags", fileName(chart)+".json")
}

// refreshTags lists chart's tags in registry r and keeps the list.
func (m *Manager) refreshTags(ctx context.Context, r storage.HelmRepo, chart string) (tagList, error) {
	if err := checkChartName(chart, true); err != nil {
		return tagList{}, err
	}
	c, err := m.credentials(r)
	if err != nil {
		return tagList{}, err
	}
	cl, err := m.registryClient(r, c)
	if err != nil {
		return tagList{}, err
	}
	ref := registryRef(r) + "/" + chart
	tags, err := inBackground(ctx, func() ([]string, error) { return cl.Tags(ref) })
	if err != nil {
		return tagList{}, fmt.Errorf("list tags of %s: %w", ref, classifyOCI(err, c))
	}
	tl := tagList{Fetched: time.Now().UTC(), Versions: tags}
	raw, err := json.Marshal(tl)
	if err != nil {
		return tl, err
	}
	p := m.tagsPath(r, chart)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return tl, fmt.Errorf("helm repository %q: %w", r.Name, err)
	}
	if err := writeFile(p, raw); err != nil {
		return tl, fmt.Errorf("helm repository %q: keep tags of %s: %w", r.Name, chart, err)
	}
	return tl, nil
}

// localTags returns chart's last tag list, if one was kept.
func (m *Manager) localTags(r storage.HelmRepo, chart string) (tagList, bool) {
	raw, err := os.ReadFile(m.tagsPath(r, chart))
	if err != nil {
		return tagList{}, false
	}
	var tl tagList
	if json.Unmarshal(raw, &tl) != nil {
		return tagList{}, false
	}
	return tl, true
}

// refreshAllTags lists again the tags of every chart asked for so far; a
// registry with none yet is only pinged.
func (m *Manager) refreshAllTags(ctx context.Context, r storage.HelmRepo) error {
	ents, err := os.ReadDir(filepath.Join(m.store.HelmDir(r.Name), "tags"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("helm repository %q: %w", r.Name, err)
	}
	var errs []error
	n := 0
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".json")
		chart := strings.ReplaceAll(base, "%2F", "/")
		if !ok || checkChartName(chart, true) != nil {
			continue
		}
		n++
		if _, err := m.refreshTags(ctx, r, chart); err != nil {
			errs = append(errs, err)
		}
	}
	if n > 0 {
		return errors.Join(errs...)
	}
	return m.ping(ctx, r)
}

// ping checks that r's registry answers (with r's credentials).
func (m *Manager) ping(ctx context.Context, r storage.HelmRepo) error {
	c, err := m.credentials(r)
	if err != nil {
		return err
	}
	host := registryRef(r)
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	reg, err := remote.NewRegistry(host)
	if err != nil {
		return fmt.Errorf("helm repository %q: %w", r.Name, err)
	}
	reg.PlainHTTP = r.PlainHTTP
	reg.Client = m.authorizer(r, c)
	if err := reg.Ping(ctx); err != nil {
		return fmt.Errorf("registry %s: %w", host, classifyOCI(err, c))
	}
	return nil
}

// ociChart is Chart for an OCI repository.
func (m *Manager) ociChart(ctx context.Context, r storage.HelmRepo, name, version string, fetched *bool) (string, string, error) {
	tags := func(ctx context.Context) (tagList, error) {
		v, err := m.do(ctx, "tags\x00"+r.Name+"\x00"+name, func() (any, error) {
			return m.refreshTags(context.WithoutCancel(ctx), r, name)
		})
		if err != nil {
			return tagList{}, err
		}
		return v.(tagList), nil
	}
	tl, ok := m.localTags(r, name)
	if !ok {
		if v, ok := m.keptWhileFailing(r, name, version); ok {
			p, _ := m.kept(r, name, v)
			return p, v, nil
		}
		var err error
		if tl, err = tags(ctx); err != nil {
			if v, ok := m.keptVersion(r, name, version, err); ok {
				p, _ := m.kept(r, name, v)
				return p, v, nil
			}
			return "", "", err
		}
	}
	v, err := resolve(tl.Versions, version)
	var nm *errNoMatch
	if errors.As(err, &nm) && time.Since(tl.Fetched) >= missRefetch {
		fresh, ferr := tags(ctx)
		if ferr != nil {
			return "", "", fmt.Errorf("chart %q in %s has %s (tags listed %s); listing them again failed too: %w: %w", name, r.URL, nm, tl.Fetched.Format(time.RFC3339), ErrNoVersion, ferr)
		}
		tl = fresh
		v, err = resolve(tl.Versions, version)
	}
	if errors.As(err, &nm) {
		return "", "", fmt.Errorf("chart %q in %s has %s (tags listed %s): %w", name, r.URL, nm, tl.Fetched.Format(time.RFC3339), ErrNoVersion)
	}
	if err != nil {
		return "", "", fmt.Errorf("chart %q from %s: %w", name, r.URL, err)
	}
	if p, ok := m.kept(r, name, v); ok {
		return p, v, nil
	}
	p, err := m.do(ctx, "chart\x00"+r.Name+"\x00"+name+"\x00"+v, func() (any, error) {
		if p, ok := m.kept(r, name, v); ok {
			return p, nil
		}
		return m.pull(context.WithoutCancel(ctx), r, name, v)
	})
	if err != nil {
		return "", "", err
	}
	*fetched = true
	return p.(string), v, nil
}

// pull fetches version of chart name from registry r, checks the archive
// against the digest of its layer and keeps it.
func (m *Manager) pull(ctx context.Context, r storage.HelmRepo, name, version string) (string, error) {
	what := fmt.Sprintf("chart %s %s from helm repository %q", name, version, r.Name)
	if _, err := m.chartPath(r, name, version); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	c, err := m.credentials(r)
	if err != nil {
		return "", err
	}
	cl, err := m.registryClient(r, c)
	if err != nil {
		return "", err
	}
	// Helm tags "+" build metadata as "_" (OCI tags cannot hold "+").
	ref := registryRef(r) + "/" + name + ":" + strings.ReplaceAll(version, "+", "_")
	if err := m.acquire(ctx); err != nil {
		return "", err
	}
	res, err := inBackground(ctx, func() (*registry.PullResult, error) { return cl.Pull(ref) })
	m.release()
	if err != nil {
		return "", fmt.Errorf("%s: pull %s: %w", what, ref, classifyOCI(err, c))
	}
	sum := sha256.Sum256(res.Chart.Data)
	got := hex.EncodeToString(sum[:])
	if want := strings.TrimPrefix(res.Chart.Digest, "sha256:"); want != got {
		return "", fmt.Errorf("%s: %w: the manifest says %s, the layer is sha256:%s; nothing was kept", what, ErrDigest, res.Chart.Digest, got)
	}
	return m.keep(r, name, version, res.Chart.Data, got)
}
