package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// Hook delete policies (argocd.argoproj.io/hook-delete-policy).
const (
	HookSucceeded      = "HookSucceeded"
	HookFailed         = "HookFailed"
	BeforeHookCreation = "BeforeHookCreation"
)

// hookRun is one hook created by a sync.
type hookRun struct {
	ref      ObjectRef // with the name the server gave (generateName)
	m        *meta.RESTMapping
	uid      types.UID
	phase    Phase
	policies []string
	ok       bool // finished successfully
	failed   bool
	msg      string
}

// deletePolicies are a hook's delete policies, Argo CD's and Helm's
// (helm.sh/hook-delete-policy) together, BeforeHookCreation when it names
// none (as in gitops-engine).
func deletePolicies(u *unstructured.Unstructured) []string {
	var out []string
	for _, p := range csv(u.GetAnnotations()[AnnotationHookDeletePolicy]) {
		switch p {
		case HookSucceeded, HookFailed, BeforeHookCreation:
			out = append(out, p)
		}
	}
	for _, p := range csv(u.GetAnnotations()[annotationHelmHookDeletePolicy]) {
		if ap, ok := helmDeletePolicies[p]; ok {
			out = append(out, ap)
		}
	}
	if len(out) == 0 {
		out = []string{BeforeHookCreation}
	}
	return out
}

func (h *hookRun) has(policy string) bool {
	for _, p := range h.policies {
		if p == policy {
			return true
		}
	}
	return false
}

// runHooks creates the hooks of a step and waits until every one has
// finished: a Job Complete or Failed, a Pod Succeeded or Failed, any other
// kind Current. It fails naming the hooks that failed.
func (r *Reconciler) runHooks(ctx context.Context, c *cluster, app string, s step, cs *ChangeSet) ([]*hookRun, error) {
	if len(s.hooks) == 0 {
		return nil, nil
	}
	var runs []*hookRun
	for _, h := range s.hooks {
		run, err := r.startHook(ctx, c, app, s.phase, h)
		if err != nil {
			return runs, fmt.Errorf("hook %s: %w", RefOf(h), err)
		}
		runs = append(runs, run)
		*cs = append(*cs, Change{Ref: run.ref, Action: Created, Reason: string(s.phase) + " hook"})
	}
	err := r.waitUntil(ctx, c, app, func() (bool, string, error) {
		var waiting []string
		for _, run := range runs {
			if run.ok || run.failed {
				continue
			}
			r.hookState(ctx, c, run)
			if !run.ok && !run.failed {
				waiting = append(waiting, run.ref.String())
			}
		}
		if len(waiting) > 0 {
			return false, fmt.Sprintf("%s hook %s did not finish within %s", s.phase, strings.Join(waiting, ", "), r.waveTimeout), nil
		}
		return true, "", nil
	})
	if err != nil {
		return runs, err
	}
	var failed []string
	for _, run := range runs {
		if run.failed {
			failed = append(failed, fmt.Sprintf("%s hook %s failed: %s", s.phase, run.ref, run.msg))
		}
	}
	if len(failed) > 0 {
		return runs, errors.New(strings.Join(failed, "; "))
	}
	return runs, nil
}

// startHook creates one hook, deleting a same-named one first when its
// policy is BeforeHookCreation. Without that policy an existing hook is
// applied over (and, unchanged, counts as it finished).
func (r *Reconciler) startHook(ctx context.Context, c *cluster, app string, ph Phase, h *unstructured.Unstructured) (*hookRun, error) {
	m, err := c.mapping(h.GroupVersionKind())
	if err != nil {
		return nil, err
	}
	res := c.resource(m, h.GetNamespace())
	run := &hookRun{ref: RefOf(h), m: m, phase: ph, policies: deletePolicies(h)}
	// The hook's watch, so its completion wakes the wait (without
	// list rights, hookState reads it with GETs).
	c.watcher().informer(ctx, m.Resource, h.GetNamespace())
	var out *unstructured.Unstructured
	if h.GetName() == "" {
		out, err = res.Create(ctx, h, metav1.CreateOptions{FieldManager: r.fieldManager})
	} else {
		if run.has(BeforeHookCreation) {
			live, err := res.Get(ctx, h.GetName(), metav1.GetOptions{})
			if err == nil {
				t := &target{u: h, ref: run.ref, m: m, live: live}
				if err := r.deleteAndWait(ctx, c, app, t); err != nil {
					return nil, err
				}
			} else if !apierrors.IsNotFound(err) {
				return nil, err
			}
		}
		force := true
		data, merr := h.MarshalJSON()
		if merr != nil {
			return nil, merr
		}
		out, err = res.Patch(ctx, h.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: r.fieldManager, Force: &force})
	}
	if err != nil {
		return nil, err
	}
	run.ref.Name, run.uid = out.GetName(), out.GetUID()
	return run, nil
}

// hookState updates run from the watch cache (or a GET where fjord may
// not watch).
func (r *Reconciler) hookState(ctx context.Context, c *cluster, run *hookRun) {
	live, watched := c.watcher().cached(run.m.Resource, run.ref.Namespace, run.ref.Name)
	if !watched {
		got, err := c.resource(run.m, run.ref.Namespace).Get(ctx, run.ref.Name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return
		}
		live = got
	}
	if live == nil || live.GetUID() != run.uid {
		if live == nil && watched {
			// Deleted before it finished (by hand, or TTL): say so.
			if _, err := c.resource(run.m, run.ref.Namespace).Get(ctx, run.ref.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				run.failed, run.msg = true, "deleted before it finished"
			}
		}
		return
	}
	run.ok, run.failed, run.msg = hookFinished(live)
}

// hookFinished reads whether a hook object finished, and how.
func hookFinished(u *unstructured.Unstructured) (ok, failed bool, msg string) {
	gvk := u.GroupVersionKind()
	switch {
	case gvk.Group == "batch" && gvk.Kind == "Job":
		if c := condition(u, "Failed"); c != nil {
			return false, true, fmt.Sprint(c["reason"], ": ", c["message"])
		}
		if condition(u, "Complete") != nil {
			return true, false, ""
		}
		return false, false, ""
	case gvk.Group == "" && gvk.Kind == "Pod":
		switch ph, _, _ := unstructured.NestedString(u.Object, "status", "phase"); ph {
		case "Succeeded":
			return true, false, ""
		case "Failed":
			m, _, _ := unstructured.NestedString(u.Object, "status", "message")
			return false, true, m
		}
		return false, false, ""
	}
	res, err := status.Compute(u)
	if err != nil {
		return false, false, ""
	}
	switch res.Status {
	case status.CurrentStatus:
		return true, false, ""
	case status.FailedStatus:
		return false, true, res.Message
	}
	return false, false, ""
}

// condition returns the status condition of that type when it is True.
func condition(u *unstructured.Unstructured, typ string) map[string]any {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["status"] == "True" {
			return m
		}
	}
	return nil
}

// cleanupHooks deletes the hooks whose policy says so: HookSucceeded ones
// that succeeded when the sync succeeded, HookFailed ones that failed.
func (r *Reconciler) cleanupHooks(ctx context.Context, c *cluster, runs []*hookRun, syncOK bool, cs *ChangeSet) {
	for _, run := range runs {
		del := (run.ok && syncOK && run.has(HookSucceeded)) || (run.failed && run.has(HookFailed))
		if !del {
			continue
		}
		policy := metav1.DeletePropagationBackground
		uid := run.uid
		err := c.resource(run.m, run.ref.Namespace).Delete(ctx, run.ref.Name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}})
		switch {
		case err == nil || apierrors.IsNotFound(err):
			why := HookSucceeded
			if run.failed {
				why = HookFailed
			}
			*cs = append(*cs, Change{Ref: run.ref, Action: Deleted, Reason: string(run.phase) + " hook, " + why})
		default:
			*cs = append(*cs, Change{Ref: run.ref, Action: Skipped, Reason: "delete hook: " + err.Error()})
		}
	}
}
