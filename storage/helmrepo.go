package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Helm repository buckets.
var (
	bucketHelmRepos  = []byte("helm_repos")  // name -> HelmRepo
	bucketHelmCharts = []byte("helm_charts") // name "\x00" chart "\x00" version -> HelmChart
)

// HelmRepo is the configuration and status of a mirrored Helm repository:
// an HTTP chart repository (index.yaml) or an OCI registry path. Its index,
// tag lists and chart archives live under HelmDir(Name).
type HelmRepo struct {
	Name string `json:"name"`
	// URL is https://… (or http://…) of the index's directory, or
	// oci://HOST/PATH; never with userinfo.
	URL string `json:"url"`
	// Interval is the time between index fetches.
	Interval time.Duration `json:"interval"`
	// Credentials names the files under DATA/credentials/helmrepo/NAME
	// that exist ("username", "password"). Their content never leaves the
	// server.
	Credentials []string `json:"credentials,omitempty"`
	// PlainHTTP talks to an OCI registry over http instead of https.
	PlainHTTP bool `json:"plainHTTP,omitempty"`
	// Auto is true for a repository fjord added by itself because an app
	// named it.
	Auto    bool      `json:"auto,omitempty"`
	Created time.Time `json:"created"`

	// Status, updated after every index fetch.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	// LastFetch is when the index (or an OCI tag list) was last read.
	LastFetch time.Time `json:"lastFetch,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	// Failures counts consecutive failed fetches (for backoff).
	Failures int `json:"failures,omitempty"`
}

// HasCredential reports whether the repository has the named credential.
func (r HelmRepo) HasCredential(name string) bool {
	for _, c := range r.Credentials {
		if c == name {
			return true
		}
	}
	return false
}

// HelmChart is one chart version kept on local disk.
type HelmChart struct {
	Repo    string `json:"repo"`
	Name    string `json:"name"`
	Version string `json:"version"`
	// Digest is the sha256 of the archive, hex.
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	Fetched time.Time `json:"fetched"`
}

// ValidateHelmRepoName checks a Helm repository name: one segment of
// [A-Za-z0-9._-], at most 64 characters, so it is safe as a directory name.
func ValidateHelmRepoName(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("%w: helm repository name longer than 64 characters", ErrInvalidName)
	}
	if err := checkSegment(name); err != nil {
		return fmt.Errorf("%w: helm repository name %q: %v", ErrInvalidName, name, err)
	}
	return nil
}

// HelmDir is where a Helm repository's index and chart archives live.
func (s *Store) HelmDir(name string) string { return filepath.Join(s.helmRoot(), name) }

// helmRoot is DATA/helm, the tree of every Helm repository's files.
func (s *Store) helmRoot() string { return filepath.Join(s.dir, "helm") }

// HelmChartPath is where the archive file (a name KeepHelmChart took) of
// Helm repository repo is kept.
func (s *Store) HelmChartPath(repo, file string) string {
	return filepath.Join(s.HelmDir(repo), "charts", file)
}

func helmChartKey(repo, chart, version string) []byte {
	return []byte(repo + "\x00" + chart + "\x00" + version)
}

// CreateHelmRepo stores a Helm repository. Its name and its URL must both
// be new.
func (s *Store) CreateHelmRepo(r HelmRepo) error {
	if err := ValidateHelmRepoName(r.Name); err != nil {
		return err
	}
	if r.Created.IsZero() {
		r.Created = time.Now().UTC()
	}
	return s.update(func(tx *wtx) error {
		b := tx.Bucket(bucketHelmRepos)
		if b.Get([]byte(r.Name)) != nil {
			return fmt.Errorf("helm repository %q: %w", r.Name, ErrExists)
		}
		var clash string
		err := b.ForEach(func(k, v []byte) error {
			var o HelmRepo
			if json.Unmarshal(v, &o) == nil && o.URL == r.URL {
				clash = o.Name
			}
			return nil
		})
		if err != nil {
			return err
		}
		if clash != "" {
			return fmt.Errorf("helm repository %s is already mirrored as %q: %w", r.URL, clash, ErrExists)
		}
		return tx.putJSON(bucketHelmRepos, r.Name, r)
	})
}

// HelmRepo returns a Helm repository by name, or a NotFoundError.
func (s *Store) HelmRepo(name string) (HelmRepo, error) {
	var r HelmRepo
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHelmRepos)
		if b == nil {
			return ErrNotFound
		}
		raw := b.Get([]byte(name))
		if raw == nil {
			return ErrNotFound
		}
		return json.Unmarshal(raw, &r)
	})
	if err != nil {
		return HelmRepo{}, notFound("helm repository", name, err)
	}
	return r, nil
}

// HelmRepos returns every Helm repository, sorted by name.
func (s *Store) HelmRepos() ([]HelmRepo, error) {
	var out []HelmRepo
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHelmRepos)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r HelmRepo
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode helm repository %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// UpdateHelmRepo applies fn to a stored Helm repository in one transaction.
func (s *Store) UpdateHelmRepo(name string, fn func(*HelmRepo) error) (HelmRepo, error) {
	var r HelmRepo
	err := s.update(func(tx *wtx) error {
		b := tx.Bucket(bucketHelmRepos)
		if b.Get([]byte(name)) == nil {
			return notFound("helm repository", name, ErrNotFound)
		}
		if err := json.Unmarshal(b.Get([]byte(name)), &r); err != nil {
			return fmt.Errorf("decode helm repository %q: %w", name, err)
		}
		if err := fn(&r); err != nil {
			return err
		}
		r.Name = name
		return tx.putJSON(bucketHelmRepos, name, r)
	})
	return r, err
}

// KeepHelmChart writes data, the archive of chart version c, to
// HelmChartPath(c.Repo, file) (0600 in a 0700 directory; temp file, fsync,
// rename) unless it is there already, and records c, in one change that
// replicates both: the log records only that the file was written, and
// the primary sends the archive beside the change (ChangeFiles). An
// archive is never rewritten, so what is sent is exactly what was kept.
//
// Charts are usually well under 1 MiB, some are several MiB. That is fine
// on the change stream, which carries a push's packs of the same size:
// a chart is kept once per version, when an app first renders it, so
// archives are few and rare next to pushes, and a follower that lacked
// one could only fetch it from the Helm repository, which is what a
// promoted replica must not depend on.
func (s *Store) KeepHelmChart(c HelmChart, file string, data []byte) error {
	if file != filepath.Base(file) || !filepath.IsLocal(file) || strings.HasPrefix(file, ".") || strings.ContainsAny(file, `/\:`) {
		return fmt.Errorf("chart archive name %q: not a plain file name", file)
	}
	path := s.HelmChartPath(c.Repo, file)
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.update(func(tx *wtx) error {
		if tx.Bucket(bucketHelmRepos).Get([]byte(c.Repo)) == nil {
			return notFound("helm repository", c.Repo, ErrNotFound)
		}
		// Chmod too: an older fjord made these directories 0755.
		for _, dir := range []string{s.HelmDir(c.Repo), filepath.Dir(path)} {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("keep chart %s: %w", file, err)
			}
			if err := os.Chmod(dir, 0o700); err != nil {
				return fmt.Errorf("keep chart %s: %w", file, err)
			}
		}
		if _, err := os.Stat(path); err != nil {
			if err := writeDurable(path, data); err != nil {
				return fmt.Errorf("keep chart %s: %w", file, err)
			}
		}
		// Written, and in the file op, even when it was there already (kept
		// by an older fjord, whose followers never got it).
		tx.writeFile(TreeHelm, "helm/"+c.Repo+"/charts/"+file)
		return tx.put(bucketHelmCharts, helmChartKey(c.Repo, c.Name, c.Version), raw)
	})
}

// writeDurable writes data to path so that a reader sees no file or all
// of it, and a crash after it returns keeps it: a temp file beside it,
// fsynced, 0600, renamed into place, then its directory and the
// directory's parent fsynced (the parent in case the directory is new).
func writeDurable(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// HelmChart returns a kept chart version, or ErrNotFound.
func (s *Store) HelmChart(repo, chart, version string) (HelmChart, error) {
	var c HelmChart
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHelmCharts)
		if b == nil {
			return ErrNotFound
		}
		raw := b.Get(helmChartKey(repo, chart, version))
		if raw == nil {
			return ErrNotFound
		}
		return json.Unmarshal(raw, &c)
	})
	if err != nil {
		return HelmChart{}, notFound("chart", repo+"/"+chart+"@"+version, err)
	}
	return c, nil
}

// HelmCharts returns the chart versions kept for repo, ordered by chart
// name then version as stored.
func (s *Store) HelmCharts(repo string) ([]HelmChart, error) {
	var out []HelmChart
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHelmCharts)
		if b == nil {
			return nil
		}
		prefix := []byte(repo + "\x00")
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var hc HelmChart
			if err := json.Unmarshal(v, &hc); err != nil {
				return fmt.Errorf("decode chart %q: %w", k, err)
			}
			out = append(out, hc)
		}
		return nil
	})
	return out, err
}

// DeleteHelmRepo removes a Helm repository's record, the records of its
// kept charts, its credentials and its directory of index and archives.
func (s *Store) DeleteHelmRepo(name string) error {
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketHelmRepos).Get([]byte(name)) == nil {
			return notFound("helm repository", name, ErrNotFound)
		}
		if err := tx.delPrefix(bucketHelmCharts, []byte(name+"\x00")); err != nil {
			return err
		}
		tx.removeCredentials(s, s.CredentialDir("helmrepo", name))
		// Followers remove its kept charts (and whatever else is there).
		tx.removeFile(TreeHelm, "helm/"+name)
		return tx.del(bucketHelmRepos, []byte(name))
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(s.CredentialDir("helmrepo", name)); err != nil {
		return fmt.Errorf("helm repository %q: remove credentials: %w", name, err)
	}
	if err := os.RemoveAll(s.HelmDir(name)); err != nil {
		return fmt.Errorf("helm repository %q: remove kept charts: %w", name, err)
	}
	return nil
}
