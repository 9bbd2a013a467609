package reconciler_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fjordhq/fjord/reconciler"
)

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	return nil
}

func TestRenderSeedOverlays(t *testing.T) {
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "gitops-infra", "seed")
	refs, _ := store.Refs("gitops-infra")
	commit, err := reconciler.ResolveRevision(refs, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"main", "refs/heads/main", commit} {
		if got, err := reconciler.ResolveRevision(refs, rev); err != nil || got != commit {
			t.Errorf("ResolveRevision(%q) = %q, %v; want %s", rev, got, err, commit)
		}
	}
	// An annotated tag resolves to the commit it points to.
	git(t, w.dir, "tag", "-a", "v1.4.2", "-m", "release")
	git(t, w.dir, "push", "-q", "origin", "v1.4.2")
	w.refresh()
	refs, _ = store.Refs("gitops-infra")
	if got, err := reconciler.ResolveRevision(refs, "v1.4.2"); err != nil || got != commit {
		t.Errorf("ResolveRevision(v1.4.2) = %q, %v; want %s", got, err, commit)
	}
	if _, err := reconciler.ResolveRevision(refs, "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("ResolveRevision(nope) = %v", err)
	}

	prod, err := reconciler.Render(store.RepoPath("gitops-infra"), commit, "overlays/prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(prod) != 4 {
		t.Fatalf("prod renders %d objects, want 4 (ConfigMap, Service, Deployment, PDB)", len(prod))
	}
	dep := find(prod, "Deployment", "payment-gateway")
	if dep == nil {
		t.Fatal("no Deployment")
	}
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 3 {
		t.Errorf("prod replicas = %d, want 3", r)
	}
	c := dep.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if c["image"] != "registry.example.com/nordic/payment-gateway:1.4.2" {
		t.Errorf("prod image = %v", c["image"])
	}
	if lim, _, _ := unstructured.NestedString(c, "resources", "limits", "memory"); lim != "512Mi" {
		t.Errorf("prod memory limit = %q", lim)
	}
	if find(prod, "PodDisruptionBudget", "payment-gateway") == nil {
		t.Error("prod lacks its PDB")
	}

	dev, err := reconciler.Render(store.RepoPath("gitops-infra"), commit, "overlays/dev")
	if err != nil {
		t.Fatal(err)
	}
	if len(dev) != 3 {
		t.Errorf("dev renders %d objects, want 3", len(dev))
	}

	// CI bumps the tag with sed; the next commit renders the new image.
	w.sed("overlays/prod/kustomization.yaml", "newTag: 1.4.2", "newTag: 1.4.3")
	next := w.commit("release 1.4.3")
	prod2, err := reconciler.Render(store.RepoPath("gitops-infra"), next, "overlays/prod")
	if err != nil {
		t.Fatal(err)
	}
	c2 := find(prod2, "Deployment", "payment-gateway").Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if c2["image"] != "registry.example.com/nordic/payment-gateway:1.4.3" {
		t.Errorf("after the bump, image = %v", c2["image"])
	}
}

func TestRenderPlainDirectory(t *testing.T) {
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "plain", "")
	w.write("apps/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n")
	w.write("apps/c.yml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
	w.write("apps/README.md", "not yaml")
	w.write("apps/nested/d.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n")
	commit := w.commit("plain")
	objs, err := reconciler.Render(store.RepoPath("plain"), commit, "apps")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range objs {
		names = append(names, u.GetName())
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Errorf("plain directory renders %v, want a,b,c (not recursive)", names)
	}
}

func TestRenderRefuses(t *testing.T) {
	store := openStore(t, t.TempDir())
	w := newWork(t, store, "bad", "")
	w.write("remote/kustomization.yaml", "resources:\n- github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v3.3.1\n")
	w.write("url/kustomization.yaml", "resources:\n- https://raw.githubusercontent.com/x/y/main/deploy.yaml\n")
	w.write("broken/kustomization.yaml", "resources:\n- missing.yaml\n")
	w.write("syntax/kustomization.yaml", "resources: [unclosed\n")
	w.write("helm/kustomization.yaml", "helmCharts:\n- name: x\n  repo: https://charts.example.com\n")
	w.write("escape/kustomization.yaml", "resources:\n- ../outside.yaml\n")
	w.write("outside.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: o\n")
	w.write("tag/kustomization.yaml", "resources:\n- cm.yaml\nimages:\n- name: web\n  newTag: 2.0\n")
	w.write("tag/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n")
	w.write("kdir/kustomization.yaml", "resources:\n- cm.yaml\n")
	w.write("kdir/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k\n")
	commit := w.commit("bad")
	// A numeric-looking newTag keeps kustomize's error and gains the fix.
	_, err := reconciler.Render(store.RepoPath("bad"), commit, "tag")
	if err == nil || !strings.Contains(err.Error(), "cannot unmarshal number") || !strings.Contains(err.Error(), `quote it: newTag: "2.0"`) {
		t.Errorf("numeric newTag: %v", err)
	}
	// Directory settings on a kustomization would be ignored: refused.
	_, err = reconciler.RenderSource(store.RepoPath("bad"), commit, reconciler.Source{Path: "kdir", Directory: &reconciler.DirectorySource{Recurse: true}})
	if err == nil || !strings.Contains(err.Error(), "spec.source.directory") {
		t.Errorf("directory settings on a kustomization: %v", err)
	}
	for dir, want := range map[string]string{
		"remote":  "remote bases are disabled",
		"url":     "remote bases are disabled",
		"broken":  "missing.yaml",
		"syntax":  "kustomize build syntax",
		"helm":    "helmCharts",
		"escape":  "security",
		"nothere": "does not exist",
	} {
		_, err := reconciler.Render(store.RepoPath("bad"), commit, dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Render(%s) = %v, want an error mentioning %q", dir, err, want)
		}
	}
}
