package deploytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/testenv"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// deployDir is the absolute path of the repository's deploy/ directory.
func deployDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy")
}

// object is one rendered Kubernetes object, as decoded YAML.
type object map[string]any

func (o object) kind() string      { return str(o, "kind") }
func (o object) name() string      { return str(o, "metadata", "name") }
func (o object) namespace() string { return str(o, "metadata", "namespace") }
func (o object) String() string {
	if ns := o.namespace(); ns != "" {
		return o.kind() + " " + ns + "/" + o.name()
	}
	return o.kind() + " " + o.name()
}

// rendered is the output of one kustomization.
type rendered struct {
	dir  string
	yaml []byte
	objs []object
}

// find returns the objects of kind, in render order.
func (r *rendered) find(kind string) []object {
	var out []object
	for _, o := range r.objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the only object of kind named name, failing the test if
// there is not exactly one.
func (r *rendered) one(t testing.TB, kind, name string) object {
	t.Helper()
	var found []object
	for _, o := range r.find(kind) {
		if o.name() == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: want one %s %q, found %d", r.dir, kind, name, len(found))
	}
	return found[0]
}

// render builds the kustomization in dir (relative to deploy/) with the
// kustomize library, with the options `kubectl kustomize` uses: the legacy
// order puts Namespaces first, so one apply of the output succeeds.
func render(t testing.TB, dir string) *rendered {
	t.Helper()
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	k := krusty.MakeKustomizer(opts)
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(deployDir(t), dir))
	if err != nil {
		t.Fatalf("kustomize build deploy/%s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build deploy/%s: %v", dir, err)
	}
	r := &rendered{dir: "deploy/" + dir, yaml: out}
	for _, res := range m.Resources() {
		o, err := res.Map()
		if err != nil {
			t.Fatalf("deploy/%s: %s: %v", dir, res.CurId(), err)
		}
		r.objs = append(r.objs, object(o))
	}
	if len(r.objs) == 0 {
		t.Fatalf("deploy/%s renders no objects", dir)
	}
	return r
}

// readYAML decodes the YAML file at path (relative to deploy/).
func readYAML(t testing.TB, path string) object {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir(t), path))
	if err != nil {
		t.Fatal(err)
	}
	var o object
	if err := yaml.Unmarshal(b, &o); err != nil {
		t.Fatalf("deploy/%s: %v", path, err)
	}
	return o
}

// get walks nested maps along path; a list element is chosen by its
// "name" field when the path element is "name=VALUE".
func get(o map[string]any, path ...string) any {
	var cur any = o
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			want, ok := strings.CutPrefix(p, "name=")
			if !ok {
				return nil
			}
			cur = nil
			for _, e := range c {
				if m, ok := e.(map[string]any); ok && m["name"] == want {
					cur = m
					break
				}
			}
		default:
			return nil
		}
	}
	return cur
}

func str(o map[string]any, path ...string) string {
	s, _ := get(o, path...).(string)
	return s
}

func list(o map[string]any, path ...string) []any {
	l, _ := get(o, path...).([]any)
	return l
}

func mapAt(o map[string]any, path ...string) map[string]any {
	m, _ := get(o, path...).(map[string]any)
	return m
}

// strings returns the string elements of a YAML list.
func stringList(l []any) []string {
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// needKube returns the shared API server and the kubectl that talks to it.
// It fails (not skips) when either is missing, unless FJORD_SKIP_KUBE=1,
// following internal/testenv.
func needKube(t *testing.T) (*testenv.Env, string) {
	t.Helper()
	env := testenv.Shared(t) // skips on FJORD_SKIP_KUBE=1, fails without the binaries
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed for the server-side dry runs (or set %s=1 to skip them): %v", testenv.EnvSkip, err)
	}
	return env, path
}

// needKubectl returns kubectl for tests that only render with it.
func needKubectl(t *testing.T) string {
	t.Helper()
	if os.Getenv(testenv.EnvSkip) == "1" {
		t.Skipf("%s=1: skipping a test that needs kubectl", testenv.EnvSkip)
	}
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed to check that `kubectl kustomize` renders the overlays (or set %s=1 to skip): %v", testenv.EnvSkip, err)
	}
	return path
}

// kubectl runs kubectl with stdin and returns stdout and stderr; err is
// non-nil when it exits non-zero.
func kubectl(t *testing.T, path string, env *testenv.Env, stdin []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if env != nil {
		args = append([]string{"--kubeconfig", env.Kubeconfig()}, args...)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), e.String(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, e.String())
	}
	return o.String(), e.String(), nil
}

// ensureNamespaces makes every namespace the rendered objects live in
// exist, because a dry run creates nothing: objects in a namespace that
// only the same dry run would create are refused as NotFound. Namespaces
// the render declares are applied for real, labels included, so that Pod
// Security admission judges the dry run by the render's own level.
func ensureNamespaces(t *testing.T, kubectlPath string, env *testenv.Env, r *rendered) {
	t.Helper()
	var decl []byte
	declared := map[string]bool{}
	for _, ns := range r.find("Namespace") {
		b, err := yaml.Marshal(ns)
		if err != nil {
			t.Fatal(err)
		}
		decl = append(append(decl, "---\n"...), b...)
		declared[ns.name()] = true
	}
	if len(decl) > 0 {
		if _, _, err := kubectl(t, kubectlPath, env, decl, "apply", "--server-side", "--field-manager=fjord-deploytest", "-f", "-"); err != nil {
			t.Fatalf("%s: create its namespaces: %v", r.dir, err)
		}
	}
	var missing []string
	for _, o := range r.objs {
		if ns := o.namespace(); ns != "" && !declared[ns] && !slices.Contains(missing, ns) {
			missing = append(missing, ns)
		}
	}
	for _, ns := range missing {
		if err := env.CreateNamespace(t.Context(), ns); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
			t.Fatal(err)
		}
	}
}

// dryRun applies the render with a server-side dry run: kube-apiserver
// validates, defaults and admits every object and persists nothing. ns, if
// not empty, is the namespace for objects that name none. A warning from
// the API server (a Pod Security violation, a deprecated API) fails the
// test too.
func dryRun(t *testing.T, kubectlPath string, env *testenv.Env, r *rendered, ns string) {
	t.Helper()
	ensureNamespaces(t, kubectlPath, env, r)
	out, stderr, err := dryRunYAML(t, kubectlPath, env, r.yaml, ns)
	if err != nil {
		t.Fatalf("%s: server-side dry run refused: %v", r.dir, err)
	}
	if strings.TrimSpace(stderr) != "" {
		t.Errorf("%s: the API server warned on the dry run:\n%s", r.dir, stderr)
	}
	for _, o := range r.objs {
		// kubectl prints "statefulset.apps/fjord serverside-applied (server dry run)".
		want := regexp.MustCompile(`(?m)^` + strings.ToLower(o.kind()) + `(\.[a-z0-9.-]+)?/` + regexp.QuoteMeta(o.name()) + ` serverside-applied \(server dry run\)$`)
		if !want.MatchString(out) {
			t.Errorf("%s: the dry run did not apply %s:\n%s", r.dir, o, out)
		}
	}
}

// dryRunYAML runs kubectl's server-side dry run of docs.
func dryRunYAML(t *testing.T, kubectlPath string, env *testenv.Env, docs []byte, ns string) (stdout, stderr string, err error) {
	t.Helper()
	args := []string{"apply", "--server-side", "--dry-run=server", "--field-manager=fjord-deploytest", "-f", "-"}
	if ns != "" {
		args = append(args, "--namespace", ns)
	}
	return kubectl(t, kubectlPath, env, docs, args...)
}
