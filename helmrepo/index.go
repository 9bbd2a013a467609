package helmrepo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/fjordhq/fjord/storage"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/repo"
)

// index is a parsed index.yaml and when it was read.
type index struct {
	file    *repo.IndexFile
	modTime time.Time
}

const userAgent = "fjord-helmrepo"

// getter returns a Helm HTTP getter for repository r: its credentials go
// only to r's own scheme, host and port, never to a chart URL elsewhere.
func (m *Manager) getter(r storage.HelmRepo, c credentials) (getter.Getter, error) {
	opts := []getter.Option{
		getter.WithURL(r.URL),
		getter.WithTimeout(m.timeout),
		getter.WithTransport(m.transport),
		getter.WithUserAgent(userAgent),
		getter.WithPassCredentialsAll(false),
	}
	if !c.empty() {
		opts = append(opts, getter.WithBasicAuth(c.username, c.password))
	}
	return getter.NewHTTPGetter(opts...)
}

// httpStatus finds the status code in the Helm getter's error ("failed to
// fetch URL : 401 Unauthorized"), which carries no typed status.
var httpStatus = regexp.MustCompile(` : ([1-5][0-9][0-9])\b[^:]*$`)

// classify wraps a getter error with ErrCredentials for 401 and 403 and
// removes secrets from its text.
func classify(err error, c credentials) error {
	if err == nil {
		return nil
	}
	err = c.redactErr(err)
	if m := httpStatus.FindStringSubmatch(err.Error()); m != nil {
		if code, _ := strconv.Atoi(m[1]); code == 401 || code == 403 {
			return fmt.Errorf("%w (HTTP %d): %w", ErrCredentials, code, err)
		}
	}
	return err
}

// get fetches url with getter g in a goroutine, so ctx can stop the wait
// (Helm's getter takes no context; its own timeout bounds the request).
func get(ctx context.Context, g getter.Getter, url string) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		buf, err := g.Get(url)
		if err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{data: buf.Bytes()}
	}()
	select {
	case res := <-ch:
		return res.data, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (m *Manager) indexPath(name string) string {
	return filepath.Join(m.store.HelmDir(name), "index.yaml")
}

// fetchIndex reads r's index.yaml, checks that Helm can load it and only
// then replaces the kept copy, so a broken or half-written index never
// replaces the last good one.
func (m *Manager) fetchIndex(ctx context.Context, r storage.HelmRepo) (*index, error) {
	c, err := m.credentials(r)
	if err != nil {
		return nil, err
	}
	g, err := m.getter(r, c)
	if err != nil {
		return nil, err
	}
	u, err := repo.ResolveReferenceURL(r.URL, "index.yaml")
	if err != nil {
		return nil, fmt.Errorf("index URL of %s: %w", r.URL, err)
	}
	data, err := get(ctx, g, u)
	if err != nil {
		return nil, fmt.Errorf("read index of helm repository %q: %w", r.Name, classify(err, c))
	}
	dir := m.store.HelmDir(r.Name)
	// Chmod too: an older fjord made these directories 0755.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("helm repository %q: %w", r.Name, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("helm repository %q: %w", r.Name, err)
	}
	tmp, err := os.CreateTemp(dir, ".index-*.yaml")
	if err != nil {
		return nil, fmt.Errorf("helm repository %q: %w", r.Name, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("helm repository %q: write index: %w", r.Name, werr)
	}
	f, err := repo.LoadIndexFile(tmp.Name())
	if err != nil {
		// Helm's error names the temporary file; the cause is enough.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return nil, fmt.Errorf("helm repository %q: %s is not a Helm repository index (is the URL the directory that holds index.yaml?); the last good index stays: %w", r.Name, u, err)
	}
	if err := os.Rename(tmp.Name(), m.indexPath(r.Name)); err != nil {
		return nil, fmt.Errorf("helm repository %q: keep index: %w", r.Name, err)
	}
	idx := &index{file: f, modTime: time.Now()}
	m.mu.Lock()
	m.indexes[r.Name] = idx
	m.mu.Unlock()
	return idx, nil
}

// localIndex returns r's last good index, from memory or from disk.
func (m *Manager) localIndex(r storage.HelmRepo) (*index, error) {
	m.mu.Lock()
	idx := m.indexes[r.Name]
	m.mu.Unlock()
	if idx != nil {
		return idx, nil
	}
	p := m.indexPath(r.Name)
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("helm repository %q has no index yet (last error: %s): %w", r.Name, orNone(r.LastError), err)
	}
	f, err := repo.LoadIndexFile(p)
	if err != nil {
		return nil, fmt.Errorf("helm repository %q: kept index: %w", r.Name, err)
	}
	idx = &index{file: f, modTime: st.ModTime()}
	m.mu.Lock()
	if cur := m.indexes[r.Name]; cur != nil {
		idx = cur
	} else {
		m.indexes[r.Name] = idx
	}
	m.mu.Unlock()
	return idx, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
