package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// dryRunConcurrency bounds the dry-run requests in flight: they write
// nothing, so more of them than of applies can run at once.
const dryRunConcurrency = 32

// dryRun asks the API server to validate, by a server-side dry-run
// apply, every object the sync would send, all at once (as
// fluxcd/pkg/ssa validates a whole set before applying any of it). It
// fails naming every object the server refused; then nothing is applied
// and the last good state stays. Not dry-run, because the server cannot
// judge them before the sync's own first writes: objects of a kind this
// render's CRDs define (or SkipDryRunOnMissingResource=true), objects in
// a namespace this sync creates, and Replace=true objects (replaced, not
// merged). A Force=true object the server refuses as invalid passes: its
// apply recreates it.
func (r *Reconciler) dryRun(ctx context.Context, c *cluster, app *Application, targets map[ObjectRef]*target, p *plan) error {
	newNS := map[string]bool{}
	for _, u := range p.first {
		if t := targets[RefOf(u)]; u.GetKind() == "Namespace" && t.send && t.live == nil {
			newNS[u.GetName()] = true
		}
	}
	var (
		mu      sync.Mutex
		refused []string
	)
	var list []*target
	for _, t := range targets {
		if t.send && t.m != nil && !newNS[t.ref.Namespace] && !syncOptionOn(app, t.u, optReplace) {
			list = append(list, t)
		}
	}
	each(ctx, dryRunConcurrency, list, func(ctx context.Context, t *target) {
		_, err := r.ssa(ctx, app, c.resource(t.m, t.ref.Namespace), r.body(app, t), true)
		if apierrors.IsInvalid(err) && t.live != nil && hasOption(t.u, AnnotationSyncOptions, optForce) {
			// Force=true: the apply will delete and recreate what the
			// server refuses to change in place (an immutable field).
			err = nil
		}
		if err != nil && ctx.Err() == nil {
			mu.Lock()
			refused = append(refused, fmt.Sprintf("%s: %v", t.ref, err))
			mu.Unlock()
		}
	})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dry run: %w", err)
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		return errors.New("the API server refused " + plural(len(refused), "object") + " in the dry run, so nothing was applied (fix it in git): " + strings.Join(firstN(refused, 10), "; "))
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// controllers names, per API group, the controller that ships the CRDs
// of that group, for the kinds an Argo CD repo most often holds before
// the cluster has them. A group not listed still gets a message naming
// the group; this only makes the fix one step shorter.
var controllers = map[string]string{
	"bitnami.com":                     "the Sealed Secrets controller (github.com/bitnami-labs/sealed-secrets; its CRD is bitnami.com_sealedsecrets.yaml)",
	"cert-manager.io":                 "cert-manager",
	"acme.cert-manager.io":            "cert-manager",
	"monitoring.coreos.com":           "the Prometheus Operator (or kube-prometheus-stack)",
	"external-secrets.io":             "the External Secrets Operator",
	"argoproj.io":                     "Argo CD or Argo Rollouts/Workflows, whichever owns the kind",
	"networking.istio.io":             "Istio",
	"security.istio.io":               "Istio",
	"traefik.io":                      "Traefik",
	"traefik.containo.us":             "Traefik",
	"gateway.networking.k8s.io":       "the Gateway API CRDs",
	"snapshot.storage.k8s.io":         "the external-snapshotter CRDs",
	"keda.sh":                         "KEDA",
	"postgresql.cnpg.io":              "CloudNativePG",
	"kustomize.toolkit.fluxcd.io":     "Flux",
	"source.toolkit.fluxcd.io":        "Flux",
	"helm.toolkit.fluxcd.io":          "Flux",
	"cilium.io":                       "Cilium",
	"velero.io":                       "Velero",
	"policy.kyverno.io":               "Kyverno",
	"kyverno.io":                      "Kyverno",
	"secrets-store.csi.x-k8s.io":      "the Secrets Store CSI driver",
	"autoscaling.k8s.io":              "the Vertical Pod Autoscaler",
	"monitoring.googleapis.com":       "Google Managed Prometheus",
	"cluster.x-k8s.io":                "Cluster API",
	"infrastructure.cluster.x-k8s.io": "the Cluster API provider",
}

// missingKind is the error for a kind the cluster does not serve. When it
// serves the kind in another version (an API removed or not yet served
// by this Kubernetes, or a CRD at a newer version), it names those; else
// see missingKindError.
func (c *cluster) missingKind(gvk schema.GroupVersionKind, err error) error {
	if ms, merr := c.mapper.RESTMappings(gvk.GroupKind()); merr == nil && len(ms) > 0 {
		var served []string
		for _, m := range ms {
			served = append(served, m.GroupVersionKind.GroupVersion().String())
		}
		sort.Strings(served)
		return fmt.Errorf("the cluster serves %s as %s, not as %s: change apiVersion in git (kubectl api-resources lists what this cluster serves): %w",
			gvk.Kind, strings.Join(served, ", "), gvk.GroupVersion(), err)
	}
	return missingKindError(gvk, err)
}

// missingKindError is the error for a kind the cluster does not serve: it
// names the API group and says that the CRD of that group, and so the
// controller that acts on it, is not installed, and how to order the
// install before this app. It wraps err so that callers still see the
// no-match error (meta.IsNoMatchError).
func missingKindError(gvk schema.GroupVersionKind, err error) error {
	kind := gvk.Kind + " (" + gvk.GroupVersion().String() + ")"
	if gvk.Group == "" || !strings.Contains(gvk.Group, ".") {
		// A built-in group: the API server of another Kubernetes version,
		// or a typo, not a missing CRD.
		return fmt.Errorf("the cluster does not serve %s: check apiVersion and kind against this cluster's Kubernetes version (kubectl api-resources): %w", kind, err)
	}
	install := "install the controller that owns API group " + gvk.Group + " (it ships the CRD)"
	if c, ok := controllers[gvk.Group]; ok {
		install = "install " + c
	}
	return fmt.Errorf("the cluster does not serve %s: the CRD of API group %s is not installed, and so neither is the controller that acts on it: %s first, "+
		"or put the CRD in this app (or in an app of an earlier sync wave); fjord retries by itself on the app's syncPolicy.retry and every resync: %w",
		kind, gvk.Group, install, err)
}
