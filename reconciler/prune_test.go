package reconciler

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestJudgePrune(t *testing.T) {
	ref := ObjectRef{Kind: "ConfigMap", Namespace: "ns", Name: "cfg"}
	obj := func(label, tracking, prune string) *unstructured.Unstructured {
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
		u.SetAnnotations(ann)
		return u
	}
	mine := trackingID("web", ref)
	cases := []struct {
		name string
		live *unstructured.Unstructured
		want pruneVerdict
	}{
		{"gone", nil, pruneGone},
		{"ours", obj("web", mine, ""), pruneDelete},
		{"other app", obj("api", trackingID("api", ref), ""), pruneNotOurs},
		{"unmanaged", obj("", "", ""), pruneNotOurs},
		{"label copied onto another object", obj("web", trackingID("web", ObjectRef{Kind: "ConfigMap", Namespace: "ns", Name: "other"}), ""), pruneNotOurs},
		{"prune disabled", obj("web", mine, "disabled"), pruneDisabled},
		{"prune annotation other value", obj("web", mine, "enabled"), pruneDelete},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, why := judgePrune("web", ref, c.live); got != c.want {
				t.Errorf("judgePrune = %v (%s), want %v", got, why, c.want)
			}
		})
	}
}
