package deploytest

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/internal/testenv"
	"sigs.k8s.io/yaml"
)

// reconcilerUser is the ServiceAccount of deploy/kubernetes/base as RBAC
// knows it.
const reconcilerUser = "system:serviceaccount:fjord:fjord"

// TestReconcilerRBAC applies the RBAC of each overlay for real and asks the
// API server what fjord's ServiceAccount may then do: dev's Roles confine it
// to its target namespaces (plus reading them, which CreateNamespace=true
// needs), prod's ClusterRole opens everything. Namespace-scoped runs first:
// after the ClusterRoleBinding exists every answer is yes.
func TestReconcilerRBAC(t *testing.T) {
	env, kc := needKube(t)
	// A binding left by an earlier run (-count=2) would answer yes to all.
	if _, _, err := kubectl(t, kc, env, nil, "delete", "clusterrolebinding", "fjord-reconciler", "--ignore-not-found"); err != nil {
		t.Fatal(err)
	}

	dev := render(t, "kubernetes/overlays/dev")
	applyKinds(t, kc, env, dev, "Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
	if n := len(dev.find("ClusterRoleBinding")); n != 0 {
		t.Fatalf("dev (namespace-scoped) binds %d ClusterRoles", n)
	}
	targets := dev.find("RoleBinding")
	if len(targets) == 0 {
		t.Fatal("dev binds no Roles")
	}
	for _, rb := range targets {
		ns := rb.namespace()
		if ns == "fjord" {
			t.Errorf("RoleBinding %s grants in fjord's own namespace; the targets are the apps' namespaces", rb)
		}
		for _, q := range [][]string{
			{"create", "deployments.apps"},
			{"patch", "services"},
			{"delete", "configmaps"},
			{"watch", "deployments.apps"},
			{"create", "roles.rbac.authorization.k8s.io"},
		} {
			canI(t, kc, env, true, append(q, "-n", ns)...)
		}
		// CreateNamespace=true reads the destination namespace first. The
		// API server authorizes a namespace object in its own namespace, so
		// the Role grants this; `auth can-i` cannot express it, a GET can.
		getAsFjord(t, kc, env, true, "namespace", ns)
	}
	for _, q := range [][]string{
		{"create", "deployments.apps", "-n", "default"},
		{"get", "secrets", "-n", "kube-system"},
		{"list", "deployments.apps", "--all-namespaces"},
		{"create", "namespaces"},
		{"create", "clusterroles.rbac.authorization.k8s.io"},
		{"create", "customresourcedefinitions.apiextensions.k8s.io"},
	} {
		canI(t, kc, env, false, q...)
	}

	getAsFjord(t, kc, env, false, "namespace", "kube-system")

	prod := render(t, "kubernetes/overlays/prod")
	if n := len(prod.find("RoleBinding")); n != 0 {
		t.Errorf("prod (cluster-wide) also has %d RoleBindings", n)
	}
	applyKinds(t, kc, env, prod, "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")
	for _, q := range [][]string{
		{"create", "deployments.apps", "-n", "default"},
		{"list", "deployments.apps", "--all-namespaces"},
		{"watch", "services", "--all-namespaces"},
		{"create", "namespaces"},
		{"create", "customresourcedefinitions.apiextensions.k8s.io"},
		{"delete", "clusterroles.rbac.authorization.k8s.io"},
	} {
		canI(t, kc, env, true, q...)
	}
}

// applyKinds server-side applies the render's objects of the given kinds
// for real.
func applyKinds(t *testing.T, kc string, env *testenv.Env, r *rendered, kinds ...string) {
	t.Helper()
	var docs []byte
	for _, o := range r.objs {
		for _, k := range kinds {
			if o.kind() == k {
				b, err := yaml.Marshal(o)
				if err != nil {
					t.Fatal(err)
				}
				docs = append(append(docs, "---\n"...), b...)
			}
		}
	}
	if _, _, err := kubectl(t, kc, env, docs, "apply", "--server-side", "--field-manager=fjord-deploytest", "-f", "-"); err != nil {
		t.Fatalf("%s: apply RBAC: %v", r.dir, err)
	}
}

// canI asks the API server whether fjord's ServiceAccount may do args
// (kubectl auth can-i VERB RESOURCE [flags]) and fails the test unless the
// answer is want.
func canI(t *testing.T, kc string, env *testenv.Env, want bool, args ...string) {
	t.Helper()
	out, _, err := kubectl(t, kc, env, nil, append([]string{"auth", "can-i", "--as=" + reconcilerUser}, args...)...)
	var exit *exec.ExitError
	switch {
	case err == nil:
		if !want {
			t.Errorf("fjord's ServiceAccount may %s; it should not", strings.Join(args, " "))
		}
	case errors.As(err, &exit) && exit.ExitCode() == 1 && strings.TrimSpace(out) == "no":
		if want {
			t.Errorf("fjord's ServiceAccount may not %s; it needs to", strings.Join(args, " "))
		}
	default:
		t.Fatalf("kubectl auth can-i %s: %v", strings.Join(args, " "), err)
	}
}

// getAsFjord runs `kubectl get KIND NAME` as fjord's ServiceAccount and
// fails the test unless it is allowed exactly when want says.
func getAsFjord(t *testing.T, kc string, env *testenv.Env, want bool, kind, name string) {
	t.Helper()
	_, stderr, err := kubectl(t, kc, env, nil, "get", kind, name, "--as="+reconcilerUser)
	switch {
	case err == nil:
		if !want {
			t.Errorf("fjord's ServiceAccount may get %s %s; it should not", kind, name)
		}
	case strings.Contains(stderr, "Forbidden") || strings.Contains(stderr, "forbidden"):
		if want {
			t.Errorf("fjord's ServiceAccount may not get %s %s; it needs to:\n%s", kind, name, stderr)
		}
	default:
		t.Fatalf("kubectl get %s %s: %v", kind, name, err)
	}
}
