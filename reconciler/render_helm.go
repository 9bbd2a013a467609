package reconciler

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/ignore"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/strvals"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Helm's annotations, read as Argo CD (gitops-engine) reads them.
const (
	annotationHelmHook             = "helm.sh/hook"
	annotationHelmHookWeight       = "helm.sh/hook-weight"
	annotationHelmHookDeletePolicy = "helm.sh/hook-delete-policy"
)

// helmHookPhases maps Helm hook events to Argo CD phases as
// gitops-engine's pkg/sync/hook/helm does; other events (test, delete,
// rollback) have no phase, so such hooks are never run.
var helmHookPhases = map[string]Phase{
	"pre-install":  PhasePreSync,
	"pre-upgrade":  PhasePreSync,
	"post-install": PhasePostSync,
	"post-upgrade": PhasePostSync,
}

// helmDeletePolicies maps Helm hook delete policies to Argo CD's.
var helmDeletePolicies = map[string]string{
	"before-hook-creation": BeforeHookCreation,
	"hook-succeeded":       HookSucceeded,
	"hook-failed":          HookFailed,
}

// helmEnv is what a Helm render needs beyond the chart and its values.
type helmEnv struct {
	ctx context.Context
	// charts fetches remote dependencies; nil refuses them.
	charts ChartSource
	// caps returns the destination's Kubernetes version and API
	// versions; nil, or an error, renders with Helm's defaults.
	caps func() (*chartutil.KubeVersion, chartutil.VersionSet, error)
	// appName is the default release name; namespace the destination's.
	appName   string
	namespace string
}

// fileSource is a tree a render reads files from: a source's commit, or
// (for a chart from a Helm repository) the chart's own files.
type fileSource struct {
	fs   filesys.FileSystem
	what string // for errors: "repo infra at 1a2b3c4d5e6f"
}

// isHelmChart reports whether dir (absolute in fs) holds a chart.
func isHelmChart(fs filesys.FileSystem, dir string) bool {
	return fs.Exists(path.Join(dir, "Chart.yaml"))
}

// loadChartFS loads the chart at dir of fs as helm's LoadDir does
// (.helmignore honoured, vendored charts/ included), without a checkout.
func loadChartFS(fs filesys.FileSystem, dir string) (*chart.Chart, error) {
	rules := ignore.Empty()
	if data, err := fs.ReadFile(path.Join(dir, ignore.HelmIgnore)); err == nil {
		if rules, err = ignore.Parse(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: %w", path.Join(dir, ignore.HelmIgnore), err)
		}
	}
	rules.AddDefaults()
	var files []*loader.BufferedFile
	prefix := strings.TrimSuffix(dir, "/") + "/"
	err := fs.Walk(dir, func(name string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		n := strings.TrimPrefix(filepath.ToSlash(name), prefix)
		if n == "" || n == strings.TrimSuffix(prefix, "/") {
			return nil
		}
		if fi.IsDir() {
			if rules.Ignore(n, fi) {
				return filepath.SkipDir
			}
			return nil
		}
		if rules.Ignore(n, fi) {
			return nil
		}
		data, err := fs.ReadFile(name)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: n, Data: bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read chart %s: %w", strings.TrimPrefix(dir, "/"), err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", pathOrRoot(strings.TrimPrefix(dir, "/")), err)
	}
	return ch, nil
}

// addRemoteDependencies loads the dependencies Chart.yaml lists but
// charts/ does not hold: from the tree (file://) or through charts
// (https://, oci://), as `helm dependency build` would.
func addRemoteDependencies(env helmEnv, ch *chart.Chart, fs filesys.FileSystem, dir string) error {
	have := map[string]bool{}
	for _, d := range ch.Dependencies() {
		have[d.Name()] = true
	}
	for _, d := range ch.Metadata.Dependencies {
		if have[d.Name] {
			continue
		}
		repo := d.Repository
		var sub *chart.Chart
		switch {
		case strings.HasPrefix(repo, "file://"):
			p := path.Join(dir, strings.TrimPrefix(repo, "file://"))
			if !fs.Exists(path.Join(p, "Chart.yaml")) {
				return fmt.Errorf("chart %s: dependency %s: %s holds no Chart.yaml in this commit: fix its repository in Chart.yaml, or vendor the chart under charts/", pathOrRoot(strings.TrimPrefix(dir, "/")), d.Name, repo)
			}
			var err error
			if sub, err = loadChartFS(fs, p); err != nil {
				return err
			}
		case strings.HasPrefix(repo, "https://"), strings.HasPrefix(repo, "http://"), strings.HasPrefix(repo, "oci://"):
			if env.charts == nil {
				return fmt.Errorf("chart %s: dependency %s comes from %s, and this fjord has no Helm repository support configured: vendor it under charts/ (helm dependency build)", pathOrRoot(strings.TrimPrefix(dir, "/")), d.Name, repo)
			}
			p, _, err := env.charts.Chart(env.ctx, repo, d.Name, d.Version)
			if err != nil {
				return fmt.Errorf("chart %s: dependency %s %s from %s: %w", pathOrRoot(strings.TrimPrefix(dir, "/")), d.Name, d.Version, repo, err)
			}
			if sub, err = loader.Load(p); err != nil {
				return fmt.Errorf("chart %s: dependency %s: load %s: %w", pathOrRoot(strings.TrimPrefix(dir, "/")), d.Name, p, err)
			}
		case repo == "":
			return fmt.Errorf("chart %s: dependency %s is not under charts/ and names no repository: vendor it (helm dependency build) or give its repository URL in Chart.yaml", pathOrRoot(strings.TrimPrefix(dir, "/")), d.Name)
		default:
			return fmt.Errorf("chart %s: dependency %s names repository %q, a local helm repo name fjord cannot know: write its URL (https://... or oci://...) in Chart.yaml, or vendor it under charts/", pathOrRoot(strings.TrimPrefix(dir, "/")), d.Name, repo)
		}
		ch.AddDependency(sub)
		have[d.Name] = true
	}
	return nil
}

// helmValues merges a source's values as `helm template` does with the
// flags Argo CD passes: --values for each value file, then for values
// (or valuesObject), then --set, --set-string and --set-file.
func helmValues(h *HelmSource, chartFS fileSource, chartDir string, refs map[string]fileSource) (map[string]any, error) {
	vals := map[string]any{}
	if h == nil {
		return vals, nil
	}
	for i, vf := range h.ValueFiles {
		at := fmt.Sprintf("helm.valueFiles[%d]", i)
		src, p, err := resolveHelmFile(vf, chartFS, chartDir, refs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		if !src.fs.Exists(p) || src.fs.IsDir(p) {
			if h.IgnoreMissingValueFiles {
				continue
			}
			return nil, fmt.Errorf("%s: value file %s does not exist in %s: fix the path (relative to the chart, or $ref/path), or set helm.ignoreMissingValueFiles: true", at, strings.TrimPrefix(p, "/"), src.what)
		}
		data, err := src.fs.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%s: value file %s in %s is not a YAML map: %w", at, strings.TrimPrefix(p, "/"), src.what, err)
		}
		vals = mergeValues(vals, m)
	}
	switch {
	case len(h.ValuesObject) > 0:
		vals = mergeValues(vals, h.ValuesObject)
	case strings.TrimSpace(h.Values) != "":
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(h.Values), &m); err != nil {
			return nil, fmt.Errorf("helm.values is not a YAML map: %w", err)
		}
		vals = mergeValues(vals, m)
	}
	for _, force := range []bool{false, true} {
		for _, p := range h.Parameters {
			if p.ForceString != force {
				continue
			}
			kv := p.Name + "=" + escapeSetValue(p.Value)
			var err error
			if force {
				err = strvals.ParseIntoString(kv, vals)
			} else {
				err = strvals.ParseInto(kv, vals)
			}
			if err != nil {
				return nil, fmt.Errorf("helm.parameters %s: %w", p.Name, err)
			}
		}
	}
	for i, fp := range h.FileParameters {
		at := fmt.Sprintf("helm.fileParameters[%d]", i)
		src, p, err := resolveHelmFile(fp.Path, chartFS, chartDir, refs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		data, err := src.fs.ReadFile(p)
		if err != nil || src.fs.IsDir(p) {
			return nil, fmt.Errorf("%s: file %s does not exist in %s: fix the path", at, strings.TrimPrefix(p, "/"), src.what)
		}
		reader := func([]rune) (any, error) { return string(data), nil }
		if err := strvals.ParseIntoFile(fp.Name+"=x", vals, reader); err != nil {
			return nil, fmt.Errorf("%s %s: %w", at, fp.Name, err)
		}
	}
	return vals, nil
}

// resolveHelmFile finds a value file: $ref/path in the source named ref,
// else path relative to the chart directory. Neither may leave its tree,
// and a URL is refused (fjord does not fetch at render time).
func resolveHelmFile(name string, chartFS fileSource, chartDir string, refs map[string]fileSource) (fileSource, string, error) {
	if strings.Contains(name, "://") {
		return fileSource{}, "", fmt.Errorf("%q is a URL; fjord reads value files only from the app's sources: commit the file to a repo and name it with a path, or $ref/path from a source with ref", name)
	}
	if strings.HasPrefix(name, "$") {
		ref, rest, _ := strings.Cut(name[1:], "/")
		src, ok := refs[ref]
		if !ok {
			return fileSource{}, "", fmt.Errorf("%q names source ref %q, which no source of the app has: add a source with ref: %s to spec.sources", name, ref, ref)
		}
		if escapesRoot("/", rest) {
			return fileSource{}, "", fmt.Errorf("%q leaves the repo of ref %s: keep value files inside it", name, ref)
		}
		return src, "/" + cleanRepoPath(rest), nil
	}
	var p string
	if strings.HasPrefix(name, "/") {
		p = path.Clean(name)
	} else {
		p = path.Join(chartDir, name)
	}
	// path.Join cleans "..", so a path that tries to leave the root would
	// end at the root; refuse it rather than read something unintended.
	if escapesRoot(chartDir, name) {
		return fileSource{}, "", fmt.Errorf("%q leaves the repo: keep value files inside it", name)
	}
	return chartFS, p, nil
}

// escapesRoot reports whether rel, joined to dir, climbs above "/".
func escapesRoot(dir, rel string) bool {
	if strings.HasPrefix(rel, "/") {
		return false
	}
	depth := len(strings.Split(strings.Trim(dir, "/"), "/"))
	if strings.Trim(dir, "/") == "" {
		depth = 0
	}
	for _, seg := range strings.Split(rel, "/") {
		switch seg {
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		case ".", "":
		default:
			depth++
		}
	}
	return false
}

// escapeSetValue escapes the commas of a --set value, as Argo CD does,
// unless it is a {a,b} list.
func escapeSetValue(v string) string {
	if strings.HasPrefix(v, "{") && strings.HasSuffix(v, "}") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == ',' && (i == 0 || v[i-1] != '\\') {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// mergeValues merges b over a as Helm merges value files: maps merge
// key by key, anything else is replaced.
func mergeValues(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]any); ok {
			if bv, ok := out[k].(map[string]any); ok {
				out[k] = mergeValues(bv, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// renderChart renders a loaded chart as `helm template` does with the
// flags Argo CD passes (--name-template, --namespace, --kube-version,
// --api-versions, --include-crds unless skipCrds), hooks included.
func renderChart(env helmEnv, ch *chart.Chart, h *HelmSource, vals map[string]any, what string) ([]*unstructured.Unstructured, error) {
	if h == nil {
		h = &HelmSource{}
	}
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	inst := action.NewInstall(cfg)
	inst.DryRun, inst.DryRunOption, inst.ClientOnly, inst.Replace = true, "true", true, true
	inst.ReleaseName = orDefault(h.ReleaseName, env.appName)
	inst.Namespace = orDefault(h.Namespace, orDefault(env.namespace, "default"))
	inst.IncludeCRDs = !h.SkipCrds
	inst.SkipCRDs = h.SkipCrds
	inst.SkipSchemaValidation = h.SkipSchemaValidation
	if env.caps != nil && (h.KubeVersion == "" || len(h.APIVersions) == 0) {
		if kv, vs, err := env.caps(); err == nil {
			inst.KubeVersion, inst.APIVersions = kv, vs
		}
	}
	if h.KubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(h.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("helm.kubeVersion %q: %w", h.KubeVersion, err)
		}
		inst.KubeVersion = kv
	}
	if len(h.APIVersions) > 0 {
		inst.APIVersions = chartutil.VersionSet(h.APIVersions)
	}
	rel, err := inst.RunWithContext(env.ctx, ch, vals)
	if err != nil {
		return nil, fmt.Errorf("helm template %s: %w%s", what, err, helmHint(err))
	}
	var buf bytes.Buffer
	buf.WriteString(rel.Manifest)
	for _, hk := range rel.Hooks {
		if h.SkipTests && isTestHook(hk) {
			continue
		}
		fmt.Fprintf(&buf, "\n---\n# Source: %s\n%s\n", hk.Path, hk.Manifest)
	}
	objs, err := decodeManifests(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("helm template %s: %w", what, err)
	}
	return objs, nil
}

func isTestHook(h *release.Hook) bool {
	for _, e := range h.Events {
		if e == release.HookTest {
			return true
		}
	}
	return false
}

// helmHint adds the fix to Helm errors whose message does not say it.
func helmHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "parse error"), strings.Contains(msg, "function \"") && strings.Contains(msg, "not defined"):
		return ": fix the template at the file and line it names"
	case strings.Contains(msg, "nil pointer evaluating"):
		return ": a value the template reads is missing: set it in values.yaml or helm.values, or guard it with `if` or `default`"
	case strings.Contains(msg, "values don't meet the specifications of the schema"):
		return ": fix the values, or set helm.skipSchemaValidation: true"
	}
	return ""
}

// decodeManifests reads the YAML documents of a render into objects,
// leaving out empty documents and expanding kind: List.
func decodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*unstructured.Unstructured
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := utilyaml.ToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("a rendered document is not YAML: %w (in %.200s)", err, doc)
		}
		if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("a rendered document is not an object: %w (in %.200s)", err, doc)
		}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				out = append(out, &l.Items[i])
			}
			continue
		}
		if u.GetName() == "" && u.GetGenerateName() == "" {
			return nil, fmt.Errorf("a rendered %s has no metadata.name (in %.200s)", u.GetKind(), doc)
		}
		out = append(out, u)
	}
}
