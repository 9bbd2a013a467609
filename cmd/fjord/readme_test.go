package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestReadmeCIRelease runs the README's CI release line on the example
// GitOps repo's prod overlay with a tag that looks like a number: the
// result must still be a Kustomization kustomize reads (newTag a string).
func TestReadmeCIRelease(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var sed string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, `sed -i "s/newTag: `) {
			sed = l
		}
	}
	if sed == "" {
		t.Fatal("README has no CI sed line for newTag")
	}
	// release copies the example repo, runs line in it with TAG=2.0 and
	// renders the prod overlay with kustomize, as fjord's reconciler does.
	release := func(line string) (string, error) {
		dir := t.TempDir()
		if out, err := exec.Command("cp", "-r", "../../deploy/example-gitops/.", dir).CombinedOutput(); err != nil {
			t.Fatalf("copy the example repo: %v %s", err, out)
		}
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TAG=2.0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(dir, "overlays", "prod"))
		if err != nil {
			return "", err
		}
		b, err := res.AsYaml()
		return string(b), err
	}
	out, err := release(sed)
	if err != nil || !strings.Contains(out, "image: ghcr.io/nordic-fintech/payment-gateway:2.0") {
		t.Fatalf("after the README's release line: %v\n%s", err, out)
	}
	// The line without its quotes is the mistake the README warns of.
	if _, err := release(`sed -i "s/newTag: .*/newTag: $TAG/" overlays/prod/kustomization.yaml`); err == nil || !strings.Contains(err.Error(), "cannot unmarshal number") {
		t.Fatalf("an unquoted newTag: 2.0 decoded: %v", err)
	}
}
