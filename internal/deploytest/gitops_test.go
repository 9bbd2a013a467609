package deploytest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/reconciler"
)

const gatewayImage = "ghcr.io/nordic-fintech/payment-gateway"

// TestExampleGitopsDryRun applies each environment of the example repo to
// a real kube-apiserver with a server-side dry run, in a namespace of the
// test's own, as an Application's destination.namespace would place it.
func TestExampleGitopsDryRun(t *testing.T) {
	env, kc := needKube(t)
	for _, dir := range []string{"example-gitops/overlays/dev", "example-gitops/overlays/prod"} {
		t.Run(dir, func(t *testing.T) {
			dryRun(t, kc, env, render(t, dir), env.Namespace(t))
		})
	}
}

// TestExampleGitopsOverlays checks what each environment changes: dev the
// replica count, prod the released image tag and resource limits.
func TestExampleGitopsOverlays(t *testing.T) {
	base := render(t, "example-gitops/base").one(t, "Deployment", "payment-gateway")
	dev := render(t, "example-gitops/overlays/dev").one(t, "Deployment", "payment-gateway")
	prod := render(t, "example-gitops/overlays/prod")
	prodDep := prod.one(t, "Deployment", "payment-gateway")
	prod.one(t, "Service", "payment-gateway")

	if b, d := num(get(base, "spec", "replicas")), num(get(dev, "spec", "replicas")); d != 1 || b <= d {
		t.Errorf("replicas: base %v, dev %v; want dev patched down to 1", b, d)
	}
	if p, b := num(get(prodDep, "spec", "replicas")), num(get(base, "spec", "replicas")); p != b {
		t.Errorf("replicas: prod %v, want the base's %v", p, b)
	}

	// The tag CI bumps is the images: entry of overlays/prod.
	k := readYAML(t, "example-gitops/overlays/prod/kustomization.yaml")
	var tag string
	for _, img := range list(k, "images") {
		img := img.(map[string]any)
		if img["name"] == gatewayImage {
			tag, _ = img["newTag"].(string)
		}
	}
	if tag != "1.4.2" {
		t.Errorf("overlays/prod images: newTag for %s = %q, want \"1.4.2\" (a string, as kustomize edit set image writes it)", gatewayImage, tag)
	}
	c := mapAt(prodDep, "spec", "template", "spec", "containers", "name=payment-gateway")
	if got := str(c, "image"); got != gatewayImage+":1.4.2" {
		t.Errorf("prod image = %q, want %s:1.4.2", got, gatewayImage)
	}
	limits := mapAt(c, "resources", "limits")
	if limits["cpu"] == nil || limits["memory"] == nil {
		t.Errorf("prod resources.limits = %v, want cpu and memory", limits)
	}
	if lim := mapAt(base, "spec", "template", "spec", "containers", "name=payment-gateway", "resources", "limits"); lim != nil {
		t.Errorf("base has limits %v; they belong to overlays/prod", lim)
	}
	if got := str(dev, "spec", "template", "spec", "containers", "name=payment-gateway", "image"); strings.HasSuffix(got, ":1.4.2") {
		t.Errorf("dev runs the release image %s", got)
	}
}

// TestExampleApplication checks the Application with fjord's own parser,
// which refuses every field fjord does not support, and that it points at
// a path of this repo that renders.
func TestExampleApplication(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir(t), "example-gitops", "application.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	app, err := reconciler.ParseApplication(b)
	if err != nil {
		t.Fatalf("deploy/example-gitops/application.yaml: %v", err)
	}
	if !app.Auto() || !app.Prune() || !app.SelfHeal() {
		t.Errorf("syncPolicy.automated = %+v, want prune and selfHeal", app.Spec.SyncPolicy.Automated)
	}
	if !app.CreateNamespace() {
		t.Error("syncOptions lack CreateNamespace=true")
	}
	if app.Spec.Destination.Server != reconciler.InClusterServer {
		t.Errorf("destination.server = %q, want %s", app.Spec.Destination.Server, reconciler.InClusterServer)
	}
	// The repo is fjord's: a bare repo name, read in-process.
	if strings.Contains(app.Spec.Source.RepoURL, ":") {
		t.Errorf("repoURL = %q, want the name of a fjord repo", app.Spec.Source.RepoURL)
	}
	if app.Spec.Source.Path != "overlays/prod" {
		t.Errorf("source.path = %q, want overlays/prod", app.Spec.Source.Path)
	}
	render(t, filepath.Join("example-gitops", app.Spec.Source.Path))

	// The namespace-scoped RBAC of deploy/kubernetes must let fjord deploy
	// this Application.
	var targets []string
	for _, rb := range render(t, "kubernetes/overlays/dev").find("RoleBinding") {
		targets = append(targets, rb.namespace())
	}
	if !slices.Contains(targets, app.Spec.Destination.Namespace) {
		t.Errorf("destination.namespace %q is not among the namespaces of components/rbac-namespaced %v", app.Spec.Destination.Namespace, targets)
	}
}
