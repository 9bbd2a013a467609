package reconciler

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestJudgePrune(t *testing.T) {
	ref := ObjectRef{Kind: "ConfigMap", Namespace: "ns", Name: "cfg"}
	obj := func(label, tracking, prune string, syncOptions ...string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}
		u.SetNamespace("ns")
		u.SetName("cfg")
		if label != "" {
			u.SetLabels(map[string]string{LabelApp: label})
		}
		ann := map[string]string{}
		if tracking != "" {
			ann[AnnotationTracking] = tracking
		}
		if prune != "" {
			ann[AnnotationPrune] = prune
		}
		if len(syncOptions) > 0 {
			ann[AnnotationSyncOptions] = syncOptions[0]
		}
		u.SetAnnotations(ann)
		return u
	}
	mine := trackingID("web", ref)
	cases := []struct {
		name    string
		live    *unstructured.Unstructured
		cascade bool
		want    pruneVerdict
	}{
		{"gone", nil, false, pruneGone},
		{"ours", obj("web", mine, ""), false, pruneDelete},
		{"other app", obj("api", trackingID("api", ref), ""), false, pruneNotOurs},
		{"unmanaged", obj("", "", ""), false, pruneNotOurs},
		{"label copied onto another object", obj("web", trackingID("web", ObjectRef{Kind: "ConfigMap", Namespace: "ns", Name: "other"}), ""), false, pruneNotOurs},
		{"prune disabled", obj("web", mine, "disabled"), false, pruneDisabled},
		{"prune disabled on app delete too", obj("web", mine, "disabled"), true, pruneDisabled},
		{"prune annotation other value", obj("web", mine, "enabled"), false, pruneDelete},
		{"Prune=false on prune", obj("web", mine, "", "ServerSideApply=true, Prune=false"), false, pruneDisabled},
		{"Prune=false on app delete", obj("web", mine, "", "Prune=false"), true, pruneDelete},
		{"Delete=false on app delete", obj("web", mine, "", "Delete=false"), true, pruneDisabled},
		{"Delete=false on prune", obj("web", mine, "", "Delete=false"), false, pruneDelete},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, why := judgePrune("web", ref, c.live, c.cascade); got != c.want {
				t.Errorf("judgePrune = %v (%s), want %v", got, why, c.want)
			}
		})
	}
}
