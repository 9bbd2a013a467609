package reconciler

import (
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func TestParseKustomizeImage(t *testing.T) {
	for in, want := range map[string]map[string]any{
		"nginx:1.28":                         {"name": "nginx", "newTag": "1.28"},
		"nginx=registry.example.com/nginx:2": {"name": "nginx", "newName": "registry.example.com/nginx", "newTag": "2"},
		"registry.example.com:5000/app:1.0":  {"name": "registry.example.com:5000/app", "newTag": "1.0"},
		"app@sha256:abcd":                    {"name": "app", "digest": "sha256:abcd"},
		"app=*:3":                            {"name": "app", "newTag": "3"},
	} {
		got, err := parseKustomizeImage(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseKustomizeImage(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseKustomizeImage("=x"); err == nil {
		t.Error("an image without a name was accepted")
	}
}

// Value files stay inside their tree; $ref names a source; URLs are refused.
func TestResolveHelmFile(t *testing.T) {
	fs := filesys.MakeFsInMemory()
	tree := fileSource{fs: fs, what: "repo a"}
	refs := map[string]fileSource{"values": {fs: fs, what: "repo b"}}
	for name, want := range map[string]string{
		"values-prod.yaml":        "/charts/web/values-prod.yaml",
		"../shared/values.yaml":   "/charts/shared/values.yaml",
		"$values/envs/prod.yaml":  "/envs/prod.yaml",
		"/top.yaml":               "/top.yaml",
		"../../at-the-root.yaml":  "/at-the-root.yaml",
		"./sub/../v.yaml":         "/charts/web/v.yaml",
		"$values/a/./b/../c.yaml": "/a/c.yaml",
	} {
		_, p, err := resolveHelmFile(name, tree, "/charts/web", refs)
		if err != nil || p != want {
			t.Errorf("resolveHelmFile(%q) = %q, %v; want %q", name, p, err, want)
		}
	}
	for name, msg := range map[string]string{
		"../../../etc/passwd":        "leaves the repo",
		"$nope/values.yaml":          "no source of the app has",
		"$values/../x.yaml":          "leaves the repo of ref values",
		"https://example.com/v.yaml": "is a URL",
	} {
		if _, _, err := resolveHelmFile(name, tree, "/charts/web", refs); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("resolveHelmFile(%q) = %v, want an error saying %q", name, err, msg)
		}
	}
}

// Parameters are set as helm --set with Argo CD's comma escaping, then
// --set-string, over the value files and values.
func TestHelmValuesOrder(t *testing.T) {
	fs := filesys.MakeFsInMemory()
	_ = fs.MkdirAll("/c")
	_ = fs.WriteFile("/c/a.yaml", []byte("x: 1\nm: {a: 1, b: 1}\n"))
	_ = fs.WriteFile("/c/b.yaml", []byte("m: {b: 2}\n"))
	h := &HelmSource{
		ValueFiles:   []string{"a.yaml", "b.yaml", "missing.yaml"},
		Values:       "y: from-values\n",
		ValuesObject: map[string]any{"y": "from-object"},
		Parameters: []HelmParameter{
			{Name: "s", Value: "007", ForceString: true},
			{Name: "list", Value: "a,b"},
			{Name: "n", Value: "3"},
		},
		IgnoreMissingValueFiles: true,
	}
	got, err := helmValues(h, fileSource{fs: fs, what: "t"}, "/c", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"x": float64(1), "m": map[string]any{"a": float64(1), "b": float64(2)}, "y": "from-object", "s": "007", "list": "a,b", "n": int64(3)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values = %#v\nwant %#v", got, want)
	}
	h.IgnoreMissingValueFiles = false
	if _, err := helmValues(h, fileSource{fs: fs, what: "repo t at 1234"}, "/c", nil); err == nil || !strings.Contains(err.Error(), "c/missing.yaml does not exist in repo t at 1234") {
		t.Errorf("a missing value file: %v", err)
	}
}
