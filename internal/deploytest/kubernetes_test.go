package deploytest

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// overlays are the ways deploy/kubernetes is meant to be applied.
var overlays = []string{"kubernetes/overlays/dev", "kubernetes/overlays/prod", "kubernetes/overlays/ha"}

// overlayFlag is a flag each overlay adds to fjord's command line.
var overlayFlag = map[string]string{
	"kubernetes/overlays/dev":  "--log-level=debug",
	"kubernetes/overlays/prod": "--log-format=json",
	"kubernetes/overlays/ha":   "--ha=$(POD_NAMESPACE)/fjord",
}

// overlayReplicas is the StatefulSet's size: one writer on one data dir,
// or a replica group of three.
var overlayReplicas = map[string]float64{"kubernetes/overlays/ha": 3}

// TestKubernetesDryRun applies each overlay to a real kube-apiserver with
// a server-side dry run: schema validation, defaulting, RBAC escalation
// checks and Pod Security admission (the fjord namespace enforces
// "restricted") all run, nothing is stored.
func TestKubernetesDryRun(t *testing.T) {
	env, kc := needKube(t)
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			dryRun(t, kc, env, render(t, dir), "")
		})
	}
}

// TestDryRunCatchesPodSecurity shows the dry run has teeth: the same
// StatefulSet with privilege escalation allowed draws the warning of Pod
// Security admission that fails TestKubernetesDryRun.
func TestDryRunCatchesPodSecurity(t *testing.T) {
	env, kc := needKube(t)
	r := render(t, "kubernetes/overlays/prod")
	ensureNamespaces(t, kc, env, r)
	sts := r.one(t, "StatefulSet", "fjord")
	c := mapAt(sts, "spec", "template", "spec", "containers", "name=fjord")
	mapAt(c, "securityContext")["allowPrivilegeEscalation"] = true
	doc, err := yaml.Marshal(sts)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, err := dryRunYAML(t, kc, env, doc, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "violate PodSecurity") || !strings.Contains(stderr, "allowPrivilegeEscalation") {
		t.Errorf("no Pod Security warning for allowPrivilegeEscalation=true; kubectl said:\n%s", stderr)
	}
}

// TestKubectlKustomize checks the command the docs give renders, and
// renders the same objects as the kustomize library the other tests use.
func TestKubectlKustomize(t *testing.T) {
	kc := needKubectl(t)
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			out, _, err := kubectl(t, kc, nil, nil, "kustomize", deployDir(t)+"/"+dir)
			if err != nil {
				t.Fatal(err)
			}
			var got []object
			for _, doc := range strings.Split(out, "\n---\n") {
				var o object
				if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
					t.Fatalf("kubectl kustomize %s: %v", dir, err)
				}
				got = append(got, o)
			}
			want := render(t, dir).objs
			if len(got) != len(want) {
				t.Fatalf("kubectl kustomize %s: %d objects, the kustomize library %d", dir, len(got), len(want))
			}
			for i := range want {
				// Through YAML and back, so numbers have the same Go type.
				b, err := yaml.Marshal(want[i])
				if err != nil {
					t.Fatal(err)
				}
				var w object
				if err := yaml.Unmarshal(b, &w); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got[i], w) {
					t.Errorf("kubectl kustomize %s: object %d is %s, differs from the kustomize library's %s", dir, i, got[i], want[i])
				}
			}
		})
	}
}

// TestStatefulSet checks what a dry run cannot: the invariants this
// project promises of the pod in every overlay.
func TestStatefulSet(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			sts := r.one(t, "StatefulSet", "fjord")
			want := overlayReplicas[dir]
			if want == 0 {
				want = 1
			}
			if n := num(get(sts, "spec", "replicas")); n != want {
				t.Errorf("replicas = %v, want %v: fjord is one writer on one data dir, or a group of three with --ha", n, want)
			}
			pod := mapAt(sts, "spec", "template", "spec")
			// The overlays append their flags to containers[0] by index.
			args := stringList(list(pod, "containers", "name=fjord", "args"))
			if want := overlayFlag[dir]; !slices.Contains(args, want) {
				t.Errorf("fjord's args %v lack the overlay's %s", args, want)
			}
			checkPodSecurity(t, pod)
			checkMainContainer(t, r, pod)
			checkHostKey(t, pod)
			checkVolumes(t, sts, pod)
		})
	}
}

func checkPodSecurity(t *testing.T, pod map[string]any) {
	t.Helper()
	psc := mapAt(pod, "securityContext")
	if psc["runAsNonRoot"] != true {
		t.Errorf("pod securityContext.runAsNonRoot = %v, want true", psc["runAsNonRoot"])
	}
	if uid := num(psc["runAsUser"]); uid <= 0 {
		t.Errorf("pod securityContext.runAsUser = %v, want a non-root uid", psc["runAsUser"])
	} else if uid != dockerfileUID(t) {
		t.Errorf("pod runAsUser %v differs from the USER %v of deploy/Dockerfile", uid, dockerfileUID(t))
	}
	if num(psc["fsGroup"]) <= 0 {
		t.Errorf("pod securityContext.fsGroup = %v, want the fjord group, so the data volume is writable", psc["fsGroup"])
	}
	if str(psc, "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("pod seccompProfile = %v, want RuntimeDefault", psc["seccompProfile"])
	}
	var all []any
	all = append(all, list(pod, "initContainers")...)
	all = append(all, list(pod, "containers")...)
	if len(all) == 0 {
		t.Fatal("no containers")
	}
	for _, c := range all {
		c := c.(map[string]any)
		name := c["name"]
		sc := mapAt(c, "securityContext")
		if sc["runAsNonRoot"] != true {
			t.Errorf("container %v: runAsNonRoot = %v, want true", name, sc["runAsNonRoot"])
		}
		if sc["readOnlyRootFilesystem"] != true {
			t.Errorf("container %v: readOnlyRootFilesystem = %v, want true", name, sc["readOnlyRootFilesystem"])
		}
		if sc["allowPrivilegeEscalation"] != false {
			t.Errorf("container %v: allowPrivilegeEscalation = %v, want false", name, sc["allowPrivilegeEscalation"])
		}
		if drop := stringList(list(sc, "capabilities", "drop")); !slices.Equal(drop, []string{"ALL"}) {
			t.Errorf("container %v: capabilities.drop = %v, want [ALL]", name, drop)
		}
		if add := list(sc, "capabilities", "add"); len(add) > 0 {
			t.Errorf("container %v: capabilities.add = %v, want none", name, add)
		}
		for _, kind := range []string{"requests", "limits"} {
			res := mapAt(c, "resources", kind)
			if res["cpu"] == nil || res["memory"] == nil {
				t.Errorf("container %v: resources.%s = %v, want cpu and memory", name, kind, res)
			}
		}
	}
}

// checkMainContainer checks that the flags, ports, probes and Services
// agree: fjord listens where the kubelet and the Services look.
func checkMainContainer(t *testing.T, r *rendered, pod map[string]any) {
	t.Helper()
	c := mapAt(pod, "containers", "name=fjord")
	if c == nil {
		t.Fatal("no container named fjord")
	}
	args := stringList(list(c, "args"))
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("args = %v, want serve ...", args)
	}
	flag := func(name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return v
			}
		}
		t.Errorf("args %v lack --%s=", args, name)
		return ""
	}
	if got := flag("ssh-addr"); got != "0.0.0.0:2222" {
		t.Errorf("--ssh-addr = %q, want 0.0.0.0:2222 (reachable from outside the pod)", got)
	}
	if got := flag("http-addr"); got != "0.0.0.0:8080" {
		t.Errorf("--http-addr = %q, want 0.0.0.0:8080 (reachable by the kubelet's probes)", got)
	}
	if got := flag("data"); got != dataDir {
		t.Errorf("--data = %q, want %s", got, dataDir)
	}
	adminKey := flag("admin-key")
	if !mountedFrom(c, pod, adminKey, "fjord-admin-key") {
		t.Errorf("--admin-key %s is not a file of a mount of Secret fjord-admin-key", adminKey)
	}

	ports := map[string]float64{}
	for _, p := range list(c, "ports") {
		p := p.(map[string]any)
		ports[p["name"].(string)] = num(p["containerPort"])
	}
	if ports["ssh"] != 2222 || ports["http"] != 8080 {
		t.Errorf("container ports = %v, want ssh 2222 and http 8080", ports)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		got := str(c, probe, "httpGet", "path")
		port := get(c, probe, "httpGet", "port")
		if got != path || (port != "http" && num(port) != 8080) {
			t.Errorf("%s = GET %v on port %v, want GET %s on port http (8080)", probe, got, port, path)
		}
	}

	env := map[string]string{}
	for _, e := range list(c, "env") {
		e := e.(map[string]any)
		env[e["name"].(string)], _ = e["value"].(string)
	}
	if env["HOME"] == "" || !writableMount(c, pod, env["HOME"]) {
		t.Errorf("HOME = %q is not on a writable mount; the root filesystem is read-only and git needs a home", env["HOME"])
	}
	if !writableMount(c, pod, "/tmp") {
		t.Error("/tmp is not a writable mount; the root filesystem is read-only")
	}

	// SSH on 22 outside, 2222 inside; HTTP on the http port. A replica
	// group has fjord-rw (the primary) and fjord-ro (any member) instead
	// of fjord-ssh.
	type svcPort struct {
		svc    string
		port   float64
		target string
	}
	svcs := []svcPort{{"fjord-ssh", 22, "ssh"}, {"fjord-http", 8080, "http"}}
	if len(r.find("PodDisruptionBudget")) > 0 {
		svcs = []svcPort{{"fjord-rw", 22, "ssh"}, {"fjord-ro", 22, "ssh"}, {"fjord-http", 8080, "http"}}
	}
	for _, want := range svcs {
		svc := r.one(t, "Service", want.svc)
		p := mapAt(svc, "spec", "ports", "name="+want.target)
		if p == nil || num(p["port"]) != want.port || p["targetPort"] != want.target {
			t.Errorf("Service %s ports = %v, want %v -> %s", want.svc, list(svc, "spec", "ports"), want.port, want.target)
		}
		labels := mapAt(r.one(t, "StatefulSet", "fjord"), "spec", "template", "metadata", "labels")
		for k, v := range mapAt(svc, "spec", "selector") {
			if k == "fjord.dev/role" {
				continue // set by the member itself, at runtime
			}
			if labels[k] != v {
				t.Errorf("Service %s selects %s=%v, which the pod does not carry", want.svc, k, v)
			}
		}
	}
}

// dataDir is where the manifests put fjord's data volume.
const dataDir = "/var/lib/fjord"

// checkHostKey checks that fjord reads its SSH host key from the Secret
// (serve --host-key), so its identity does not depend on the volume.
func checkHostKey(t *testing.T, pod map[string]any) {
	t.Helper()
	c := mapAt(pod, "containers", "name=fjord")
	var key string
	for _, a := range stringList(list(c, "args")) {
		if v, ok := strings.CutPrefix(a, "--host-key="); ok {
			key = v
		}
	}
	if key == "" {
		t.Fatal("fjord has no --host-key: it would generate a new identity on every new volume")
	}
	m, _ := mountOf(c, pod, key)
	if !mountedFrom(c, pod, key, "fjord-host-key") || m["readOnly"] != true {
		t.Errorf("--host-key %s is not a file of a read-only mount of Secret fjord-host-key", key)
	}
	v := mapAt(pod, "volumes", "name="+str(m, "name"))
	if mode := num(get(v, "secret", "defaultMode")); mode < 0 || int(mode)&0o007 != 0 {
		t.Errorf("the host key Secret is mounted with mode %o: a private key must not be world-readable", int(mode))
	}
}

func checkVolumes(t *testing.T, sts, pod map[string]any) {
	t.Helper()
	tpls := list(sts, "spec", "volumeClaimTemplates")
	if len(tpls) != 1 {
		t.Fatalf("volumeClaimTemplates = %v, want one (data)", tpls)
	}
	vct := tpls[0].(map[string]any)
	if str(vct, "metadata", "name") != "data" {
		t.Errorf("volumeClaimTemplate is named %q, want data", str(vct, "metadata", "name"))
	}
	if str(vct, "spec", "storageClassName") == "" {
		t.Error("the data claim names no storageClassName: it would land on the cluster's default class, rarely local NVMe")
	}
	if str(vct, "spec", "resources", "requests", "storage") == "" {
		t.Error("the data claim requests no storage size")
	}
	if !writableMount(mapAt(pod, "containers", "name=fjord"), pod, dataDir) {
		t.Errorf("fjord does not mount the data volume at %s", dataDir)
	}
}

// mountOf returns the volume mount of c whose mountPath holds path, and
// the pod volume it mounts.
func mountOf(c, pod map[string]any, path string) (mount, volume map[string]any) {
	best := ""
	for _, m := range list(c, "volumeMounts") {
		m := m.(map[string]any)
		mp, _ := m["mountPath"].(string)
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, mount = mp, m
		}
	}
	if mount == nil {
		return nil, nil
	}
	if name, ok := mount["name"].(string); ok {
		if v := mapAt(pod, "volumes", "name="+name); v != nil {
			return mount, v
		}
		return mount, map[string]any{"name": name, "volumeClaimTemplate": true}
	}
	return mount, nil
}

func mountedFrom(c, pod map[string]any, path, secret string) bool {
	_, v := mountOf(c, pod, path)
	return v != nil && str(v, "secret", "secretName") == secret
}

func writableMount(c, pod map[string]any, path string) bool {
	m, v := mountOf(c, pod, path)
	if m == nil || m["readOnly"] == true {
		return false
	}
	return v["emptyDir"] != nil || v["volumeClaimTemplate"] == true
}

// num returns a YAML number as float64, and -1 for anything else.
func num(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int64:
		return float64(n)
	case int:
		return float64(n)
	}
	return -1
}
