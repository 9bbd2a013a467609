package reconciler

import (
	"context"
	"fmt"
	"os"
	"path"
	"reflect"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/fjordhq/fjord/storage"
)

// AllSources are the app's sources: spec.sources when set, else
// spec.source alone.
func (a *Application) AllSources() []Source {
	if len(a.Spec.Sources) > 0 {
		return a.Spec.Sources
	}
	return []Source{a.Spec.Source}
}

// sourceField names source i of the app in messages.
func (a *Application) sourceField(i int) string {
	if len(a.Spec.Sources) > 0 {
		return fmt.Sprintf("spec.sources[%d]", i)
	}
	return "spec.source"
}

// sourceRev is one source of an app resolved to what it renders from.
type sourceRev struct {
	src Source
	// repo is the fjord repo of a git source; "" for a chart.
	repo string
	// commit is the git commit, or the chart version resolved.
	commit string
	// chartPath is the local chart archive of a chart source.
	chartPath string
}

// keyPart identifies what the source renders from, for the render cache.
func (s sourceRev) keyPart() string {
	if s.src.IsChart() {
		return "chart\x00" + s.src.RepoURL + "\x00" + s.src.Chart + "\x00" + s.commit
	}
	return "git\x00" + s.repo + "\x00" + s.commit + "\x00" + s.src.Path
}

// sourcesKey is the render cache key of resolved sources: the same key
// renders the same objects (the app's spec is fixed for a cache).
func sourcesKey(revs []sourceRev) string {
	parts := make([]string, len(revs))
	for i, s := range revs {
		parts[i] = s.keyPart()
	}
	return strings.Join(parts, "\x01")
}

// resolveSources resolves every source of the app: a git source to its
// repo and commit, a chart to its local archive and version.
func (r *Reconciler) resolveSources(ctx context.Context, app *Application) ([]sourceRev, error) {
	srcs := app.AllSources()
	revs := make([]sourceRev, len(srcs))
	for i, s := range srcs {
		at := app.sourceField(i)
		wrap := func(err error) error {
			if len(srcs) > 1 {
				return fmt.Errorf("%s: %w", at, err)
			}
			return err
		}
		revs[i].src = s
		if s.IsChart() {
			if r.charts == nil {
				return revs, fmt.Errorf("%s: chart %s from %s: this fjord is not configured with Helm repository support; meanwhile vendor the chart into a git repo and point path at it", at, s.Chart, s.RepoURL)
			}
			p, v, err := r.charts.Chart(ctx, s.ChartRepoURL(), s.Chart, s.TargetRevision)
			if err != nil {
				return revs, wrap(fmt.Errorf("chart %s %s from %s: %w", s.Chart, s.TargetRevision, s.RepoURL, err))
			}
			revs[i].chartPath, revs[i].commit = p, v
			continue
		}
		repo, err := r.resolveRepo(s.RepoURL)
		if err != nil {
			return revs, wrap(err)
		}
		revs[i].repo = repo
		refs, ok := r.store.Refs(repo)
		if !ok {
			return revs, wrap(fmt.Errorf("repo %q: %w", repo, storage.ErrNotFound))
		}
		if revs[i].commit, err = ResolveRevision(refs, orDefault(s.TargetRevision, "HEAD")); err != nil {
			return revs, wrap(fmt.Errorf("repo %q: %w", repo, err))
		}
	}
	return revs, nil
}

// renderEnv is what renderSources needs of the reconciler.
type renderEnv struct {
	helm     helmEnv
	repoPath func(repo string) string
}

// renderSources renders the resolved sources of an app into one list of
// objects, source after source, and returns what each git source's tree
// gave to the render (nil for a chart source).
func renderSources(env renderEnv, app *Application, revs []sourceRev) ([]*unstructured.Unstructured, []*renderInputs, error) {
	inputs := make([]*renderInputs, len(revs))
	trees := make([]fileSource, len(revs))
	refs := map[string]fileSource{}
	for i, s := range revs {
		if s.src.IsChart() {
			continue
		}
		tree, err := treeFS(env.repoPath(s.repo), s.commit)
		if err != nil {
			return nil, inputs, fmt.Errorf("%s: %w", app.sourceField(i), err)
		}
		inputs[i] = newRenderInputs()
		trees[i] = fileSource{fs: &recordingFS{FileSystem: tree, in: inputs[i]}, what: fmt.Sprintf("repo %s at %.12s", s.repo, s.commit)}
		if s.src.Ref != "" {
			refs[s.src.Ref] = trees[i]
		}
	}
	var out []*unstructured.Unstructured
	for i, s := range revs {
		if s.src.refOnly() {
			continue
		}
		var objs []*unstructured.Unstructured
		var err error
		if s.src.IsChart() {
			objs, err = renderRepoChart(env.helm, s, refs)
		} else {
			objs, err = renderGitSource(env.helm, trees[i], s, refs)
		}
		if err != nil {
			if len(revs) > 1 {
				err = fmt.Errorf("%s: %w", app.sourceField(i), err)
			}
			return nil, inputs, err
		}
		out = append(out, objs...)
	}
	return out, inputs, nil
}

// renderGitSource renders a source's path in its tree: a chart with
// Helm, anything else with kustomize (a plain directory through a
// generated kustomization).
func renderGitSource(env helmEnv, tree fileSource, s sourceRev, refs map[string]fileSource) ([]*unstructured.Unstructured, error) {
	src := s.src
	root := "/" + cleanRepoPath(src.Path)
	if !tree.fs.IsDir(root) {
		return nil, fmt.Errorf("path %q does not exist at commit %.12s: check spec.source.path", src.Path, s.commit)
	}
	if src.Kustomize != nil && reflect.ValueOf(*src.Kustomize).IsZero() {
		src.Kustomize = nil // kustomize: {}, as Argo CD's exports write it
	}
	if !isHelmChart(tree.fs, root) {
		if src.Helm != nil && !reflect.ValueOf(*src.Helm).IsZero() {
			return nil, fmt.Errorf("%s holds no Chart.yaml, so spec.source.helm would be ignored: point path at the chart's directory, or drop helm", pathOrRoot(src.Path))
		}
		return renderFS(tree.fs, s.commit, src)
	}
	if src.Kustomize != nil {
		return nil, fmt.Errorf("%s holds a Helm chart (Chart.yaml), so spec.source.kustomize would be ignored: drop kustomize, or point path at a kustomization", pathOrRoot(src.Path))
	}
	if d := src.Directory; d != nil && (d.Recurse || d.Include != "" || d.Exclude != "") {
		return nil, fmt.Errorf("%s holds a Helm chart (Chart.yaml), so spec.source.directory would be ignored: drop directory", pathOrRoot(src.Path))
	}
	what := fmt.Sprintf("%s at %.12s", pathOrRoot(src.Path), s.commit)
	ch, err := loadChartFS(tree.fs, root)
	if err != nil {
		return nil, err
	}
	if err := addRemoteDependencies(env, ch, tree.fs, root); err != nil {
		return nil, err
	}
	vals, err := helmValues(src.Helm, tree, root, refs)
	if err != nil {
		return nil, err
	}
	return renderChart(env, ch, src.Helm, vals, what)
}

// renderRepoChart renders a chart from a Helm repository out of its local
// archive; its value files are files of the chart or $ref/path.
func renderRepoChart(env helmEnv, s sourceRev, refs map[string]fileSource) ([]*unstructured.Unstructured, error) {
	what := fmt.Sprintf("chart %s %s from %s", s.src.Chart, s.commit, s.src.RepoURL)
	f, err := os.Open(s.chartPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	files, err := loader.LoadArchiveFiles(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", what, s.chartPath, err)
	}
	fs := filesys.MakeFsInMemory()
	for _, bf := range files {
		p := "/" + cleanRepoPath(bf.Name)
		if err := fs.MkdirAll(path.Dir(p)); err != nil {
			return nil, err
		}
		if err := fs.WriteFile(p, bf.Data); err != nil {
			return nil, err
		}
	}
	chartFS := fileSource{fs: fs, what: what}
	ch, err := loadChartFS(fs, "/")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := addRemoteDependencies(env, ch, fs, "/"); err != nil {
		return nil, err
	}
	vals, err := helmValues(s.src.Helm, chartFS, "/", refs)
	if err != nil {
		return nil, err
	}
	return renderChart(env, ch, s.src.Helm, vals, what)
}

// helmCapabilities reads what `helm template` is told with --kube-version
// and --api-versions from the destination cluster's discovery.
func helmCapabilities(dc discovery.DiscoveryInterface) func() (*chartutil.KubeVersion, chartutil.VersionSet, error) {
	return func() (*chartutil.KubeVersion, chartutil.VersionSet, error) {
		v, err := dc.ServerVersion()
		if err != nil {
			return nil, nil, fmt.Errorf("read the cluster's version: %w", err)
		}
		kv, err := chartutil.ParseKubeVersion(v.GitVersion)
		if err != nil {
			return nil, nil, err
		}
		vs, err := action.GetVersionSet(dc)
		if err != nil {
			return nil, nil, err
		}
		return kv, vs, nil
	}
}

// refChangeConcerns reports whether a move of repo concerns an app: one of
// its git sources is in repo and the app's sources no longer resolve to
// what it last rendered (or its last sync failed). When the move touches
// nothing the last render read, the cached render is carried to the new
// commits, so the sync that follows renders nothing. diffs caches
// changed paths by "repo from to".
func (r *Reconciler) refChangeConcerns(st *appState, app *Application, repo string, last string, inputs []*renderInputs, diffs map[string][]string) bool {
	srcs := app.AllSources()
	lastParts := strings.Split(last, "\x01")
	if last == "" || len(lastParts) != len(srcs) {
		lastParts = make([]string, len(srcs))
	}
	concerned := false
	revs := make([]sourceRev, len(srcs))
	for i, s := range srcs {
		revs[i].src = s
		if s.IsChart() {
			continue
		}
		rp, err := r.resolveRepo(s.RepoURL)
		if err != nil {
			continue
		}
		revs[i].repo = rp
		concerned = concerned || rp == repo
	}
	if !concerned {
		return false
	}
	for i, s := range srcs {
		if s.IsChart() {
			continue // a push does not move a chart: keep what it resolved to
		}
		refs, ok := r.store.Refs(revs[i].repo)
		if !ok {
			return true // the sync says why
		}
		c, err := ResolveRevision(refs, orDefault(s.TargetRevision, "HEAD"))
		if err != nil {
			return true
		}
		revs[i].commit = c
	}
	parts := make([]string, len(revs))
	for i, s := range revs {
		parts[i] = s.keyPart()
		if s.src.IsChart() {
			parts[i] = lastParts[i]
		}
	}
	key := strings.Join(parts, "\x01")
	if last == key && !r.lastSyncFailed(st.name) {
		return false
	}
	if last == "" || len(inputs) != len(srcs) {
		return true
	}
	for i, s := range revs {
		if s.src.IsChart() || parts[i] == lastParts[i] {
			continue
		}
		f := strings.Split(lastParts[i], "\x00")
		if len(f) != 4 || f[1] != s.repo || f[3] != s.src.Path {
			return true
		}
		k := s.repo + " " + f[2] + " " + s.commit
		changed, seen := diffs[k]
		if !seen {
			var err error
			if changed, err = changedPaths(r.store.RepoPath(s.repo), f[2], s.commit); err != nil {
				changed = nil
				r.log.Warn("diff commits for the render cache", "app", st.name, "err", err)
			}
			diffs[k] = changed
		}
		if changed == nil {
			return true
		}
		// manifest-generate-paths speak of the first source's repo.
		if i == 0 && inputsTouched(app, inputs[i], changed) || i > 0 && (inputs[i] == nil || inputs[i].touchedBy(changed)) {
			return true
		}
	}
	st.mu.Lock()
	if st.renderKey == last {
		st.renderKey = key
	}
	st.mu.Unlock()
	return true
}

// sourceRevisions is the status of each source for an app with several
// sources or a chart source (nil for one git source, whose commit is the
// status's Revision): revs as rendered now, Synced carried from prev.
func sourceRevisions(app *Application, revs []string, prev []storage.SourceRevision) []storage.SourceRevision {
	srcs := app.AllSources()
	if len(srcs) == 1 && !srcs[0].IsChart() {
		return nil
	}
	out := make([]storage.SourceRevision, len(srcs))
	for i, s := range srcs {
		name := s.RepoURL
		switch {
		case s.IsChart():
			name += " chart " + s.Chart
		case s.Path != "":
			name += " " + s.Path
		}
		if s.Ref != "" {
			name += " (ref " + s.Ref + ")"
		}
		if s.Name != "" {
			name = s.Name + ": " + name
		}
		out[i].Source = name
		if i < len(revs) {
			out[i].Revision = revs[i]
		}
		if i < len(prev) && prev[i].Source == name {
			out[i].Synced = prev[i].Synced
		}
	}
	return out
}

// sourcesMoved reports whether any source renders another revision than
// the one last synced.
func sourcesMoved(srcs []storage.SourceRevision) bool {
	for _, s := range srcs {
		if s.Revision != s.Synced {
			return true
		}
	}
	return false
}
