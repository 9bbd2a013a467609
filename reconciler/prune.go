package reconciler

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Prune decision for one live object.
type pruneVerdict int

const (
	pruneDelete   pruneVerdict = iota
	pruneGone                  // already deleted: drop from the inventory
	pruneNotOurs               // not this app's: never touch, drop from the inventory
	pruneDisabled              // fjord.dev/prune: disabled, Prune=false, Delete=false: keep, report as orphan
)

// judgePrune decides what may happen to a stale inventory entry's live
// object, on a prune (cascade false) or on the deletion of the app
// (cascade true). It is pure, so the rules are tested without a cluster:
// only an object that carries this app's label and this exact tracking ID
// is ever deleted.
func judgePrune(app string, ref ObjectRef, live *unstructured.Unstructured, cascade bool) (pruneVerdict, string) {
	if live == nil {
		return pruneGone, ""
	}
	if owner := ownedBy(live); owner != app {
		if owner == "" {
			return pruneNotOurs, "no longer carries fjord's tracking label"
		}
		return pruneNotOurs, fmt.Sprintf("now owned by app %q", owner)
	}
	if id := live.GetAnnotations()[AnnotationTracking]; id != trackingID(app, ref) {
		return pruneNotOurs, fmt.Sprintf("tracking annotation %q is not this object's", id)
	}
	if live.GetAnnotations()[AnnotationPrune] == "disabled" {
		return pruneDisabled, AnnotationPrune + ": disabled"
	}
	if !cascade && hasOption(live, AnnotationSyncOptions, optPruneFalse) {
		return pruneDisabled, AnnotationSyncOptions + ": " + optPruneFalse
	}
	if cascade && hasOption(live, AnnotationSyncOptions, optDeleteFalse) {
		return pruneDisabled, AnnotationSyncOptions + ": " + optDeleteFalse
	}
	return pruneDelete, ""
}

// pruneOpts are the settings of one prune.
type pruneOpts struct {
	// enabled deletes; otherwise stale objects are only kept as orphans.
	enabled bool
	// cascade is the deletion of the app itself (Delete=false applies)
	// rather than a prune (Prune=false applies).
	cascade bool
	// propagation of the deletes; "" means background.
	propagation metav1.DeletionPropagation
}

// prunePropagation is the propagation of an app's prune deletes
// (syncOption PrunePropagationPolicy). Unset, it is background, as fjord
// always pruned: the object goes at once and the garbage collector
// deletes its dependents after (foreground would keep the object, marked
// for deletion, until they are gone).
func prunePropagation(app *Application) metav1.DeletionPropagation {
	if _, set := app.syncOptionValue("PrunePropagationPolicy"); !set {
		return metav1.DeletePropagationBackground
	}
	return app.PrunePropagation()
}

// pruneResult is what a prune did.
type pruneResult struct {
	cs ChangeSet
	// kept are the entries kept as orphans; quiet among them those
	// marked argocd.argoproj.io/compare-options: IgnoreExtraneous, which
	// do not make the app OutOfSync.
	kept  []Entry
	quiet map[ObjectRef]bool
}

// prune deletes (when enabled) the stale entries whose live objects are
// this app's, and keeps the others it may not delete as orphans.
func (r *Reconciler) prune(ctx context.Context, c *cluster, app string, stale []Entry, o pruneOpts) pruneResult {
	var (
		cs   ChangeSet
		kept []Entry
	)
	quiet := map[ObjectRef]bool{}
	for _, e := range stale {
		m, err := c.mapping(e.GVK())
		if err != nil {
			// The kind is gone (its CRD was deleted): so are its objects.
			continue
		}
		res := c.resource(m, e.Ref.Namespace)
		live, err := res.Get(ctx, e.Ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			live, err = nil, nil
		}
		if err != nil {
			cs = append(cs, Change{Ref: e.Ref, Action: Skipped, Reason: "read before prune: " + err.Error()})
			kept = append(kept, e)
			continue
		}
		verdict, why := judgePrune(app, e.Ref, live, o.cascade)
		if live != nil && hasOption(live, AnnotationCompareOptions, "IgnoreExtraneous") {
			quiet[e.Ref] = true
		}
		switch verdict {
		case pruneGone:
			continue
		case pruneNotOurs:
			cs = append(cs, Change{Ref: e.Ref, Action: Skipped, Reason: why})
			continue
		case pruneDisabled:
			cs = append(cs, Change{Ref: e.Ref, Action: Skipped, Reason: why})
			kept = append(kept, e)
			continue
		}
		if !o.enabled {
			kept = append(kept, e)
			continue
		}
		if e.Ref.Group == "" && e.Ref.Kind == "Namespace" {
			// Deleting a namespace deletes everything in it: only when
			// everything in it is this app's.
			if other := r.namespaceHoldsOthers(ctx, c, app, e.Ref.Name); other != "" {
				cs = append(cs, Change{Ref: e.Ref, Action: Skipped, Reason: "holds " + other + "; delete the namespace by hand once it is empty"})
				kept = append(kept, e)
				continue
			}
		}
		// Only delete the object fjord saw: a same-named object created
		// since has another UID.
		uid := live.GetUID()
		policy := o.propagation
		if policy == "" {
			policy = metav1.DeletePropagationBackground
		}
		err = res.Delete(ctx, e.Ref.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
		if err != nil && !apierrors.IsNotFound(err) {
			cs = append(cs, Change{Ref: e.Ref, Action: Skipped, Reason: "delete: " + err.Error()})
			kept = append(kept, e)
			continue
		}
		cs = append(cs, Change{Ref: e.Ref, Action: Deleted})
	}
	return pruneResult{cs: cs, kept: kept, quiet: quiet}
}

// namespaceHoldsOthers names an object in ns that is not this app's (an
// unmanaged object, or another app's), or says why it cannot tell; "" when
// everything in ns is this app's. Objects the cluster makes in every
// namespace (events, endpoints, the default ServiceAccount, the root CA
// ConfigMap) do not count.
func (r *Reconciler) namespaceHoldsOthers(ctx context.Context, c *cluster, app, ns string) string {
	lists, err := c.disco.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return "objects fjord could not list (" + err.Error() + ")"
	}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, res := range l.APIResources {
			if strings.Contains(res.Name, "/") || !hasVerb(res.Verbs, "list") {
				continue
			}
			switch res.Name {
			case "events", "endpoints", "endpointslices":
				continue
			}
			got, err := c.dyn.Resource(gv.WithResource(res.Name)).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelApp + "!=" + app, Limit: 10})
			if err != nil {
				if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
					continue
				}
				return res.Kind + " objects fjord could not list (" + err.Error() + ")"
			}
			for _, u := range got.Items {
				if (res.Kind == "ServiceAccount" && u.GetName() == "default") || (res.Kind == "ConfigMap" && u.GetName() == "kube-root-ca.crt") {
					continue
				}
				if res.Kind == "ConfigMap" && u.GetLabels()[labelInventory] == app {
					continue // this app's inventory copy
				}
				return fmt.Sprintf("%s %s, not this app's", res.Kind, u.GetName())
			}
		}
	}
	return ""
}

func hasVerb(verbs []string, v string) bool {
	for _, x := range verbs {
		if x == v {
			return true
		}
	}
	return false
}
