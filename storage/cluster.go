package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketClusters holds the clusters apps may deploy to besides fjord's
// own (the in-cluster default of its kubeconfig): name -> Cluster.
var bucketClusters = []byte("clusters")

// InClusterName is the name of the cluster of fjord's own kubeconfig, as
// Argo CD names it; no stored cluster may take it.
const InClusterName = "in-cluster"

// Credential files of a cluster, under CredentialDir("cluster", NAME).
const (
	ClusterCAFile    = "ca.crt"
	ClusterCertFile  = "client.crt"
	ClusterKeyFile   = "client.key"
	ClusterTokenFile = "token"
)

// Cluster states, as `fjord cluster list` shows them.
const (
	// ClusterUnknown: not contacted since fjord started.
	ClusterUnknown = "Unknown"
	// ClusterConnected: the last request to its API server was answered.
	ClusterConnected = "Connected"
	// ClusterUnreachable: its API server did not answer; LastError says
	// why. fjord keeps trying and recovers by itself.
	ClusterUnreachable = "Unreachable"
)

// Cluster is a Kubernetes cluster apps may name in spec.destination. Its
// secrets (CA, client certificate and key, bearer token) are files of
// mode 0600 under CredentialDir("cluster", Name); Credentials names the
// ones that exist, and their content never leaves the server.
type Cluster struct {
	Name string `json:"name"`
	// Server is the API server URL, https://HOST:PORT.
	Server string `json:"server"`
	// TLSServerName is the name the serving certificate is checked
	// against, when it is not the host of Server.
	TLSServerName string `json:"tlsServerName,omitempty"`
	// Insecure skips the check of the serving certificate (a
	// kubeconfig's insecure-skip-tls-verify).
	Insecure bool `json:"insecure,omitempty"`
	// Credentials names the credential files that exist: ca.crt,
	// client.crt, client.key, token.
	Credentials []string `json:"credentials,omitempty"`
	// Source says where the cluster came from: "kubeconfig FILE context
	// C", or "secret NAME" for an Argo CD cluster Secret.
	Source  string    `json:"source,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// ClusterCredentials are a cluster's secrets. The zero value is a
// cluster reached without any (a public CA, anonymous).
type ClusterCredentials struct {
	// CA is the PEM of the CAs that sign the serving certificate; empty
	// means the system roots.
	CA []byte
	// Cert and Key are a PEM client certificate and its key.
	Cert, Key []byte
	// Token is a bearer token.
	Token string
}

// files maps credential file names to contents; absent secrets are left
// out.
func (c ClusterCredentials) files() map[string][]byte {
	out := map[string][]byte{}
	for name, data := range map[string][]byte{ClusterCAFile: c.CA, ClusterCertFile: c.Cert, ClusterKeyFile: c.Key, ClusterTokenFile: []byte(c.Token)} {
		if len(data) > 0 {
			out[name] = data
		}
	}
	return out
}

// clusterName is what a cluster name may be: a DNS label, as Argo CD's
// cluster names and kubeconfig context names usually are.
var clusterName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// ValidateClusterName checks a cluster name: lower-case letters, digits,
// '-' and '.', at most 63 characters, not "in-cluster".
func ValidateClusterName(name string) error {
	if name == InClusterName {
		return fmt.Errorf("%w: cluster name %q is fjord's own cluster (its kubeconfig's); give another name", ErrInvalidName, name)
	}
	if !clusterName.MatchString(name) {
		return fmt.Errorf("%w: cluster name %q: use lower-case letters, digits, '-' and '.', at most 63 characters", ErrInvalidName, name)
	}
	return nil
}

// ErrClusterInUse is returned by DeleteCluster while apps deploy to it.
var ErrClusterInUse = errors.New("cluster in use")

// PutCluster creates or replaces a cluster and its credentials, keeping
// its creation time, in one change: the credential files are written
// (each atomically) and the record put in one transaction, and a secret
// the new credentials lack is removed once it committed, so a replaced
// token never lingers and the record never names a missing file, here or
// on a replica.
func (s *Store) PutCluster(c Cluster, creds ClusterCredentials) (Cluster, error) {
	if err := ValidateClusterName(c.Name); err != nil {
		return Cluster{}, err
	}
	dir := s.CredentialDir("cluster", c.Name)
	files := creds.files()
	c.Credentials = nil
	var gone []string
	for _, name := range []string{ClusterCAFile, ClusterCertFile, ClusterKeyFile, ClusterTokenFile} {
		if _, ok := files[name]; ok {
			c.Credentials = append(c.Credentials, name)
		} else {
			gone = append(gone, name)
		}
	}
	err := s.update(func(tx *wtx) error {
		if err := tx.writeSecrets(s, dir, files); err != nil {
			return fmt.Errorf("cluster %q: write credentials: %w", c.Name, err)
		}
		now := time.Now().UTC()
		var old Cluster
		if raw := tx.Bucket(bucketClusters).Get([]byte(c.Name)); raw != nil && json.Unmarshal(raw, &old) == nil {
			c.Created = old.Created
		}
		if c.Created.IsZero() {
			c.Created = now
		}
		c.Updated = now
		for _, name := range gone {
			tx.removeCredentials(s, filepath.Join(dir, name))
		}
		return tx.putJSON(bucketClusters, c.Name, c)
	})
	if err != nil {
		return Cluster{}, fmt.Errorf("save cluster %q: %w", c.Name, err)
	}
	for _, name := range gone {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return Cluster{}, fmt.Errorf("cluster %q: remove the replaced credential %s: %w", c.Name, name, err)
		}
	}
	return c, nil
}

// Cluster returns a cluster, or an error matching ErrNotFound.
func (s *Store) Cluster(name string) (Cluster, error) {
	var c Cluster
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx, bucketClusters, name, &c) })
	if err != nil {
		return Cluster{}, notFound("cluster", name, err)
	}
	return c, nil
}

// Clusters returns every stored cluster, sorted by name.
func (s *Store) Clusters() ([]Cluster, error) {
	var out []Cluster
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClusters).ForEach(func(k, v []byte) error {
			var c Cluster
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode cluster %q: %w", k, err)
			}
			out = append(out, c)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// ClusterCredentials reads a cluster's secrets from their files. Only
// the server's own use of them (a client to the cluster) may call it.
func (s *Store) ClusterCredentials(c Cluster) (ClusterCredentials, error) {
	dir := s.CredentialDir("cluster", c.Name)
	var creds ClusterCredentials
	for _, name := range c.Credentials {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			// The path names the file, never its content.
			return ClusterCredentials{}, fmt.Errorf("cluster %q: read credential %s: %w", c.Name, name, err)
		}
		switch name {
		case ClusterCAFile:
			creds.CA = data
		case ClusterCertFile:
			creds.Cert = data
		case ClusterKeyFile:
			creds.Key = data
		case ClusterTokenFile:
			creds.Token = string(data)
		}
	}
	return creds, nil
}

// AppsOnCluster names the apps that deploy to the cluster, sorted.
func (s *Store) AppsOnCluster(name string) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = appsOnCluster(tx, name)
		return err
	})
	return out, err
}

func appsOnCluster(tx reader, name string) ([]string, error) {
	var out []string
	err := tx.Bucket(bucketApps).ForEach(func(k, v []byte) error {
		var a App
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode app %q: %w", k, err)
		}
		if a.Cluster == name {
			out = append(out, a.Name)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// DeleteCluster removes a cluster and its credential files. It refuses,
// in the same transaction, while an app deploys to it, naming the apps.
func (s *Store) DeleteCluster(name string) error {
	err := s.update(func(tx *wtx) error {
		if tx.Bucket(bucketClusters).Get([]byte(name)) == nil {
			return &NotFoundError{Kind: "cluster", Name: name}
		}
		apps, err := appsOnCluster(tx, name)
		if err != nil {
			return err
		}
		if len(apps) > 0 {
			return fmt.Errorf("cluster %q: %w by apps %v: delete them or point their spec.destination elsewhere first", name, ErrClusterInUse, apps)
		}
		// The credential files go in the same change, so replicas drop
		// them too; they are removed here once it is committed.
		tx.removeCredentials(s, s.CredentialDir("cluster", name))
		return tx.del(bucketClusters, []byte(name))
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(s.CredentialDir("cluster", name)); err != nil {
		return fmt.Errorf("cluster %q: remove credentials: %w", name, err)
	}
	return nil
}
