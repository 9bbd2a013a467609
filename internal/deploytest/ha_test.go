package deploytest

import (
	"slices"
	"strings"
	"testing"
)

// TestHAOverlay checks what the replica group overlay promises beyond the
// common invariants: every member runs the same --ha flags with its own
// id and address from the downward API, members spread over nodes, a
// drain takes one at a time, fjord-rw follows the primary's label, and
// the group may touch only its Leases and its own Pods.
func TestHAOverlay(t *testing.T) {
	r := render(t, "kubernetes/overlays/ha")
	sts := r.one(t, "StatefulSet", "fjord")
	pod := mapAt(sts, "spec", "template", "spec")
	c := mapAt(pod, "containers", "name=fjord")
	args := stringList(list(c, "args"))
	for _, want := range []string{"--ha=$(POD_NAMESPACE)/fjord", "--advertise=$(POD_NAME).fjord-headless.$(POD_NAMESPACE).svc:2222",
		"--ha-key=/etc/fjord/ha-key/ha_key", "--sync-replicas=1"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
	for _, env := range []string{"POD_NAME", "POD_NAMESPACE"} {
		e := mapAt(c, "env", "name="+env)
		if !strings.HasPrefix(str(e, "valueFrom", "fieldRef", "fieldPath"), "metadata.") {
			t.Errorf("env %s = %v, want it from the downward API", env, e)
		}
	}
	if str(sts, "spec", "serviceName") != "fjord-headless" || r.one(t, "Service", "fjord-headless") == nil {
		t.Error("the members' addresses need the headless governing Service fjord-headless")
	}
	terms := list(pod, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
	if len(terms) != 1 || str(terms[0].(map[string]any), "topologyKey") != "kubernetes.io/hostname" {
		t.Errorf("pod anti-affinity %v: want one member per node", terms)
	}
	if v := mapAt(pod, "volumes", "name=ha-key"); str(v, "secret", "secretName") != "fjord-ha-key" {
		t.Errorf("group key volume %v: want the Secret fjord-ha-key", v)
	}
	if str(sts, "spec", "podManagementPolicy") != "Parallel" {
		t.Error("podManagementPolicy: want Parallel, so a member restarts while another is down")
	}

	pdb := r.one(t, "PodDisruptionBudget", "fjord")
	if num(get(pdb, "spec", "maxUnavailable")) != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable = %v, want 1", get(pdb, "spec", "maxUnavailable"))
	}
	if str(r.one(t, "Service", "fjord-rw"), "spec", "selector", "fjord.dev/role") != "primary" {
		t.Error("fjord-rw must select fjord.dev/role=primary")
	}
	if str(r.one(t, "Service", "fjord-ro"), "spec", "selector", "fjord.dev/role") != "" {
		t.Error("fjord-ro must select every member")
	}
	if len(r.find("Service")) != 4 {
		t.Errorf("Services %v: want fjord-headless, fjord-http, fjord-rw, fjord-ro (no fjord-ssh spreading pushes over replicas)", r.find("Service"))
	}

	role := r.one(t, "Role", "fjord-ha")
	verbs := map[string][]string{}
	for _, rule := range list(role, "rules") {
		m := rule.(map[string]any)
		for _, res := range stringList(list(m, "resources")) {
			verbs[res] = stringList(list(m, "verbs"))
		}
	}
	for _, v := range []string{"get", "list", "watch", "create", "update"} {
		if !slices.Contains(verbs["leases"], v) {
			t.Errorf("Role fjord-ha lacks %s on leases: %v", v, verbs)
		}
	}
	if !slices.Contains(verbs["pods"], "patch") || slices.Contains(verbs["pods"], "delete") {
		t.Errorf("Role fjord-ha on pods: %v, want patch (the role label) and no more than get", verbs["pods"])
	}
	rb := r.one(t, "RoleBinding", "fjord-ha")
	subj := list(rb, "subjects")
	if str(rb, "roleRef", "name") != "fjord-ha" || len(subj) != 1 || str(subj[0].(map[string]any), "name") != str(pod, "serviceAccountName") {
		t.Errorf("RoleBinding fjord-ha binds %v to %v, want the pod's ServiceAccount %s", get(rb, "roleRef"), subj, str(pod, "serviceAccountName"))
	}
}
