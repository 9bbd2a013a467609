package storage_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

// TestClusters stores a cluster with its secrets (files 0600, replicated
// as change-log file ops, never in the record), replaces its credential,
// refuses to delete it while an app deploys there, and deletes it with its
// files once none does.
func TestClusters(t *testing.T) {
	s := open(t, t.TempDir())
	const token = "cluster-token-value"
	if _, err := s.PutCluster(storage.Cluster{Name: storage.InClusterName, Server: "https://x"}, storage.ClusterCredentials{Token: token}); !errors.Is(err, storage.ErrInvalidName) {
		t.Errorf("a cluster named in-cluster: %v", err)
	}
	c, err := s.PutCluster(storage.Cluster{Name: "edge", Server: "https://edge.example.com:6443"}, storage.ClusterCredentials{CA: []byte("CA"), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Credentials, ",") != "ca.crt,token" || c.Created.IsZero() {
		t.Fatalf("stored: %+v", c)
	}
	dir := s.CredentialDir("cluster", "edge")
	for _, f := range c.Credentials {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	got, err := s.Cluster("edge")
	if err != nil || got.Server != c.Server {
		t.Fatalf("Cluster: %+v %v", got, err)
	}
	creds, err := s.ClusterCredentials(got)
	if err != nil || creds.Token != token || string(creds.CA) != "CA" {
		t.Fatalf("ClusterCredentials: %+v %v", creds, err)
	}
	changes, err := s.ChangesSince(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, ch := range changes {
		if strings.Contains(string(ch.Raw), "edge.example.com") && strings.Contains(string(ch.Raw), token) {
			t.Error("the token is in the cluster's record")
		}
		for _, op := range ch.Ops {
			if strings.HasPrefix(op.File, "cluster/edge/") && !op.Delete {
				files++
			}
		}
	}
	if files != 2 {
		t.Errorf("%d credential files written in the change log, want 2 (replicas hold the files too)", files)
	}

	// A client certificate replaces the token: the token file goes.
	c, err = s.PutCluster(storage.Cluster{Name: "edge", Server: c.Server}, storage.ClusterCredentials{Cert: []byte("C"), Key: []byte("K")})
	if err != nil || strings.Join(c.Credentials, ",") != "client.crt,client.key" {
		t.Fatalf("replace: %+v %v", c, err)
	}
	if _, err := os.Stat(filepath.Join(dir, storage.ClusterTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old token after the replace: %v", err)
	}

	if _, err := s.PutApp("web", "{}", storage.AppMeta{Cluster: "edge"}); err != nil {
		t.Fatal(err)
	}
	if apps, err := s.AppsOnCluster("edge"); err != nil || strings.Join(apps, ",") != "web" {
		t.Errorf("AppsOnCluster: %v %v", apps, err)
	}
	if err := s.DeleteCluster("edge"); !errors.Is(err, storage.ErrClusterInUse) || !strings.Contains(err.Error(), "[web]") {
		t.Errorf("delete while used: %v", err)
	}
	if err := s.DeleteApp("web"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCluster("edge"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("credentials after delete: %v", err)
	}
	if _, err := s.Cluster("edge"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Cluster after delete: %v", err)
	}
	if err := s.DeleteCluster("edge"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}

// TestPutClusterIsOneChange replaces a cluster's token with a client
// certificate: the files written, the token removed and the record are
// one change, so a replica that holds the record holds its files.
func TestPutClusterIsOneChange(t *testing.T) {
	s := open(t, t.TempDir())
	for i, creds := range []storage.ClusterCredentials{{Token: "t"}, {Cert: []byte("C"), Key: []byte("K")}} {
		wantFiles := i + 1 // the token; then the certificate and the key
		before := s.Position()
		if _, err := s.PutCluster(storage.Cluster{Name: "edge", Server: "https://edge.example.com:6443"}, creds); err != nil {
			t.Fatal(err)
		}
		changes, err := s.ChangesSince(before, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 1 {
			t.Fatalf("PutCluster made %d changes, want 1", len(changes))
		}
		var ops []string
		for _, op := range changes[0].Ops {
			switch {
			case op.File != "" && op.Delete:
				ops = append(ops, "rm "+op.File)
			case op.File != "":
				ops = append(ops, "write "+op.File)
			default:
				ops = append(ops, "put "+op.Bucket+"/"+string(op.Key))
			}
		}
		got := strings.Join(ops, ",")
		if !strings.Contains(got, "put clusters/edge") || strings.Count(got, "write cluster/edge/") != wantFiles {
			t.Errorf("the change's ops: %s", got)
		}
		if creds.Token == "" && !strings.Contains(got, "rm cluster/edge/token") {
			t.Errorf("the token's removal is not in the change: %s", got)
		}
	}
}
