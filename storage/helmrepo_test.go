package storage_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

func TestHelmRepoRecords(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if repos, err := s.HelmRepos(); err != nil || len(repos) != 0 {
		t.Fatalf("HelmRepos on a fresh store = %v, %v", repos, err)
	}
	if _, err := s.HelmRepo("stable"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("HelmRepo of nothing: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b", "../x", ".hidden"} {
		if err := s.CreateHelmRepo(storage.HelmRepo{Name: bad, URL: "https://x"}); !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("CreateHelmRepo(%q): %v; want ErrInvalidName", bad, err)
		}
	}
	r := storage.HelmRepo{Name: "stable", URL: "https://charts.example.com/stable"}
	if err := s.CreateHelmRepo(r); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateHelmRepo(r); !errors.Is(err, storage.ErrExists) {
		t.Errorf("same name twice: %v", err)
	}
	if err := s.CreateHelmRepo(storage.HelmRepo{Name: "other", URL: r.URL}); !errors.Is(err, storage.ErrExists) {
		t.Errorf("same URL twice: %v", err)
	}
	if err := s.KeepHelmChart(storage.HelmChart{Repo: "nope", Name: "x", Version: "1.0.0"}, "x-1.0.0.tgz", []byte("x")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("chart of an unknown repository: %v", err)
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if err := s.KeepHelmChart(storage.HelmChart{Repo: "stable", Name: "demo", Version: v, Digest: "d"}, "demo-"+v+".tgz", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// A repository whose name extends another's keeps its own charts.
	if err := s.CreateHelmRepo(storage.HelmRepo{Name: "stable2", URL: "https://charts.example.com/stable2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.KeepHelmChart(storage.HelmChart{Repo: "stable2", Name: "demo", Version: "9.0.0"}, "demo-9.0.0.tgz", []byte("9")); err != nil {
		t.Fatal(err)
	}
	if cs, err := s.HelmCharts("stable"); err != nil || len(cs) != 2 {
		t.Fatalf("HelmCharts(stable) = %v, %v", cs, err)
	}
	if _, err := s.UpdateHelmRepo("stable", func(r *storage.HelmRepo) error { r.LastError = "boom"; r.Failures = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.HelmRepo("stable"); got.LastError != "boom" || got.Failures != 2 || got.Created.IsZero() {
		t.Errorf("after update: %+v", got)
	}
	if err := s.WriteCredentials(s.CredentialDir("helmrepo", "stable"), "stable", map[string][]byte{"password": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.HelmDir("stable"), "charts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteHelmRepo("stable"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HelmChart("stable", "demo", "1.0.0"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("chart record after delete: %v", err)
	}
	if cs, _ := s.HelmCharts("stable2"); len(cs) != 1 {
		t.Errorf("deleting stable touched stable2's charts: %v", cs)
	}
	for _, gone := range []string{s.CredentialDir("helmrepo", "stable"), s.HelmDir("stable")} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s left after delete: %v", gone, err)
		}
	}
	if err := s.DeleteHelmRepo("stable"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}
