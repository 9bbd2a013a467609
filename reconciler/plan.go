package reconciler

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fjordhq/fjord/storage"
)

// Argo CD's annotations on the objects of a render, read as Argo CD
// documents them (user-guide: sync-waves, resource_hooks, sync-options).
const (
	// AnnotationHook makes an object a hook of the listed phases
	// (comma-separated): PreSync, Sync, PostSync, SyncFail, or Skip.
	AnnotationHook = "argocd.argoproj.io/hook"
	// AnnotationHookDeletePolicy lists when a hook is deleted:
	// HookSucceeded, HookFailed, BeforeHookCreation (the default).
	AnnotationHookDeletePolicy = "argocd.argoproj.io/hook-delete-policy"
	// AnnotationSyncOptions holds per-object options (Prune=false, ...).
	AnnotationSyncOptions = "argocd.argoproj.io/sync-options"
	// AnnotationCompareOptions holds per-object compare options
	// (IgnoreExtraneous, ServerSideDiff=true).
	AnnotationCompareOptions = "argocd.argoproj.io/compare-options"
)

// Phase is a sync phase, in the order a sync runs them; SyncFail runs
// only when an earlier phase failed.
type Phase string

// Phases of a sync, as in Argo CD.
const (
	PhasePreSync  Phase = "PreSync"
	PhaseSync     Phase = "Sync"
	PhasePostSync Phase = "PostSync"
	PhaseSyncFail Phase = "SyncFail"
)

// phaseOrder is the order of the phases a successful sync runs.
var phaseOrder = []Phase{PhasePreSync, PhaseSync, PhasePostSync}

// step is one wave of one phase: what is applied (resources, which go
// into the inventory), created (hooks) and synced (child Applications)
// before the next step starts.
type step struct {
	phase Phase
	wave  int
	// objs are the resources of the wave (Sync phase only).
	objs []*unstructured.Unstructured
	// hooks are the hook objects of the wave, created afresh each sync.
	hooks []*unstructured.Unstructured
}

// plan is what one sync, diff or ref change works from: the revision it
// resolved, the render split into what is applied when, and what the app
// applied before. It is built by (*Reconciler).plan and read-only after.
type plan struct {
	app *Application
	// repo is the fjord repo of the first git source.
	repo string
	// commit is the first source's commit (or chart version); revisions
	// are every source's, in order.
	commit    string
	revisions []string
	// objs are every resource the app applies (not hooks, not child
	// Applications), prepared: the inventory of a clean sync.
	objs []*unstructured.Unstructured
	// first are the Namespaces and CRDs among objs: applied before any
	// hook or wave, since everything else may live in or be of them.
	first []*unstructured.Unstructured
	// steps are the PreSync, Sync and PostSync waves, in order. Every
	// wave that holds resources, hooks or children has a step.
	steps []step
	// syncFail are the SyncFail hooks by wave, run when the sync fails.
	syncFail []step
	// children are the argoproj.io Application and AppProject documents
	// of the render, by sync wave. They are never sent to the cluster:
	// fjord is their controller, and syncs them in their wave.
	children map[int][]*unstructured.Unstructured
	// prev is the inventory of the last sync.
	prev Inventory
	// noHooks skips the hooks of the steps: the sync changes nothing
	// (see syncApp). SyncFail hooks still run if it fails.
	noHooks bool
	// refused is set when commit's signature does not satisfy the
	// project's signatureKeys; the plan then fails before any render.
	refused *storage.RefusedCommit
	// cluster is where the app deploys: its destination's.
	cluster *cluster
}

// plan resolves the app's revision, renders it (from the app's cache
// when the commit and path are unchanged), splits the render into hooks,
// waves and child Applications, and reads the previous inventory.
func (r *Reconciler) plan(ctx context.Context, st *appState, app *Application) (*plan, error) {
	c, err := r.clusterFor(st, app)
	if err != nil {
		return nil, err
	}
	revs, err := r.resolveSources(ctx, app)
	p := &plan{app: app, cluster: c}
	for _, s := range revs {
		p.revisions = append(p.revisions, s.commit)
		if p.repo == "" && s.repo != "" {
			p.repo = s.repo
		}
	}
	if len(revs) > 0 {
		p.commit = revs[0].commit
	}
	st.mu.Lock()
	st.repo = p.repo
	st.mu.Unlock()
	if err != nil {
		return p, err
	}
	// Every git source's commit must satisfy the project's
	// signatureKeys (a chart from a Helm repository has no commit).
	for _, s := range revs {
		if s.repo == "" {
			continue
		}
		if p.refused, err = r.verifyRevision(ctx, app, s.repo, s.commit); err != nil {
			return p, err
		}
	}
	rendered, err := r.render(ctx, c, st, app, revs)
	if err != nil {
		return p, err
	}
	var resources, hooks []*unstructured.Unstructured
	p.children = map[int][]*unstructured.Unstructured{}
	for _, u := range rendered {
		switch {
		case isChildApp(u):
			w, err := syncWave(u)
			if err != nil {
				return p, err
			}
			p.children[w] = append(p.children[w], u)
		case isSkipped(u):
		case isHook(u):
			hooks = append(hooks, u)
		default:
			resources = append(resources, u)
		}
	}
	if p.objs, err = r.prepare(c, app, resources); err != nil {
		return p, err
	}
	if hooks, err = r.prepare(c, app, hooks); err != nil {
		return p, err
	}
	if err := p.split(hooks); err != nil {
		return p, err
	}
	if err := r.checkPlan(p); err != nil {
		return p, err
	}
	if p.prev, err = r.previousInventory(ctx, c, app); err != nil {
		return p, err
	}
	return p, nil
}

// sameAsInventory reports whether the plan's resources are exactly what
// the last sync applied: none added, dropped or changed.
func sameAsInventory(p *plan) bool {
	for _, u := range p.objs {
		if e, ok := p.prev[RefOf(u)]; !ok || e.Hash != hashObject(u) {
			return false
		}
	}
	return len(Diff(p.prev, inventoryOf(p.objs))) == 0
}

// split orders the prepared resources and hooks into steps.
func (p *plan) split(hooks []*unstructured.Unstructured) error {
	type key struct {
		phase Phase
		wave  int
	}
	steps := map[key]*step{}
	at := func(ph Phase, w int) *step {
		k := key{ph, w}
		if steps[k] == nil {
			steps[k] = &step{phase: ph, wave: w}
		}
		return steps[k]
	}
	for _, u := range p.objs {
		if isStage1(u) {
			p.first = append(p.first, u)
			continue
		}
		w, err := syncWave(u)
		if err != nil {
			return err
		}
		s := at(PhaseSync, w)
		s.objs = append(s.objs, u)
	}
	for w := range p.children {
		at(PhaseSync, w)
	}
	for _, h := range hooks {
		w, err := syncWave(h)
		if err != nil {
			return err
		}
		for _, ph := range hookPhases(h) {
			s := at(ph, w)
			s.hooks = append(s.hooks, h)
		}
	}
	rank := map[Phase]int{PhasePreSync: 0, PhaseSync: 1, PhasePostSync: 2, PhaseSyncFail: 3}
	for _, s := range steps {
		if s.phase == PhaseSyncFail {
			p.syncFail = append(p.syncFail, *s)
		} else {
			p.steps = append(p.steps, *s)
		}
	}
	less := func(a, b step) bool {
		if rank[a.phase] != rank[b.phase] {
			return rank[a.phase] < rank[b.phase]
		}
		return a.wave < b.wave
	}
	sort.Slice(p.steps, func(i, j int) bool { return less(p.steps[i], p.steps[j]) })
	sort.Slice(p.syncFail, func(i, j int) bool { return less(p.syncFail[i], p.syncFail[j]) })
	return nil
}

// syncWave is an object's argocd.argoproj.io/sync-wave or, without one,
// its helm.sh/hook-weight (as gitops-engine reads waves); 0 when unset.
func syncWave(u *unstructured.Unstructured) (int, error) {
	s, ok := u.GetAnnotations()[AnnotationSyncWave]
	if !ok {
		w, _ := strconv.Atoi(strings.TrimSpace(u.GetAnnotations()[annotationHelmHookWeight]))
		return w, nil
	}
	w, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%s: annotation %s: %q is not an integer: write a whole number such as \"-1\" or \"2\"", RefOf(u), AnnotationSyncWave, s)
	}
	return w, nil
}

// isChildApp is true for the Argo CD documents fjord acts on itself
// instead of sending them: Applications and AppProjects.
func isChildApp(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	return gvk.Group == "argoproj.io" && (gvk.Kind == "Application" || gvk.Kind == "AppProject")
}

// csv splits a comma-separated annotation value into trimmed items.
func csv(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// hookTypes are the values of the hook annotation fjord knows or,
// without an Argo CD hook annotation, the phases of the helm.sh/hook
// events (Argo CD ignores Helm's hooks when its own annotation is there).
func hookTypes(u *unstructured.Unstructured) []string {
	var out []string
	for _, t := range csv(u.GetAnnotations()[AnnotationHook]) {
		switch t {
		case string(PhasePreSync), string(PhaseSync), string(PhasePostSync), string(PhaseSyncFail), "Skip":
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		for _, e := range csv(u.GetAnnotations()[annotationHelmHook]) {
			if ph, ok := helmHookPhases[e]; ok {
				out = append(out, string(ph))
			}
		}
	}
	return out
}

// isSkipped is true for an object whose only hook type is Skip: Argo CD
// neither applies it nor runs it.
func isSkipped(u *unstructured.Unstructured) bool {
	t := hookTypes(u)
	return len(t) == 1 && t[0] == "Skip"
}

// isHook is true for an object with the hook annotation (but for Skip
// alone), or a Helm hook (but for crd-install, which Helm uses for CRDs):
// it is created in its phases, not applied and inventoried. A Helm hook
// of events Argo CD has no phase for (test, pre-delete...) is a hook that
// never runs, as in Argo CD.
func isHook(u *unstructured.Unstructured) bool {
	if _, ok := u.GetAnnotations()[AnnotationHook]; ok {
		return !isSkipped(u)
	}
	v, ok := u.GetAnnotations()[annotationHelmHook]
	return ok && v != "crd-install"
}

// hookPhases are the phases a hook runs in.
func hookPhases(u *unstructured.Unstructured) []Phase {
	var out []Phase
	seen := map[Phase]bool{}
	for _, t := range hookTypes(u) {
		if t == "Skip" || seen[Phase(t)] {
			continue
		}
		seen[Phase(t)] = true
		out = append(out, Phase(t))
	}
	return out
}

// hasOption reports whether an annotation's comma-separated options hold
// opt (such as "Prune=false").
// syncOptionOn says whether sync option opt (such as "Replace=true") holds
// for object u: set for the whole app in spec.syncPolicy.syncOptions, or on
// the object in its argocd.argoproj.io/sync-options annotation, as Argo CD
// reads both.
func syncOptionOn(app *Application, u *unstructured.Unstructured, opt string) bool {
	if hasOption(u, AnnotationSyncOptions, opt) {
		return true
	}
	name, _, _ := strings.Cut(opt, "=")
	return app != nil && app.SyncOption(name)
}

func hasOption(u *unstructured.Unstructured, annotation, opt string) bool {
	if u == nil {
		return false
	}
	for _, o := range csv(u.GetAnnotations()[annotation]) {
		if o == opt {
			return true
		}
	}
	return false
}
