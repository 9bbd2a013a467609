package reconciler

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDiffFields(t *testing.T) {
	want := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"fjord.dev/app":"a"}},
	  "spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"app","image":"web:2","args":["-v"]}]}}}}`
	cases := []struct {
		name string
		live string
		want []string
	}{
		{"equal, with defaults added", `{"metadata":{"name":"web","uid":"x","labels":{"fjord.dev/app":"a","extra":"y"}},
		  "spec":{"replicas":3,"strategy":{},"template":{"spec":{"containers":[{"name":"app","image":"web:2","args":["-v"],"imagePullPolicy":"IfNotPresent"}]}}},"status":{"replicas":3}}`, nil},
		{"scaled", `{"metadata":{"labels":{"fjord.dev/app":"a"}},"spec":{"replicas":5,"template":{"spec":{"containers":[{"name":"app","image":"web:2","args":["-v"]}]}}}}`,
			[]string{"spec.replicas"}},
		{"image and label", `{"metadata":{"labels":{}},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"app","image":"web:1","args":["-v"]}]}}}}`,
			[]string{"metadata.labels.fjord.dev/app", "spec.template.spec.containers[name=app].image"}},
		{"args list", `{"metadata":{"labels":{"fjord.dev/app":"a"}},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"app","image":"web:2","args":["-v","-x"]}]}}}}`,
			[]string{"spec.template.spec.containers[name=app].args"}},
		{"container gone", `{"metadata":{"labels":{"fjord.dev/app":"a"}},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"other"}]}}}}`,
			[]string{"spec.template.spec.containers[name=app]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, p := range diffFields(decode(t, want), decode(t, c.live)) {
				got = append(got, p.String())
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("diffFields = %q, want %q", got, c.want)
			}
		})
	}
}

func TestChangedByAndOwns(t *testing.T) {
	live := &unstructured.Unstructured{Object: map[string]any{}}
	t0 := metav1.NewTime(time.Unix(1000, 0))
	t1 := metav1.NewTime(time.Unix(2000, 0))
	live.SetManagedFields([]metav1.ManagedFieldsEntry{
		{Manager: "fjord", Operation: metav1.ManagedFieldsOperationApply, Time: &t0,
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{}}}}}}}`)}},
		{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "scale", Time: &t1,
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{}}}`)}},
	})
	replicas := fieldPath{{key: "spec"}, {key: "replicas"}}
	image := fieldPath{{key: "spec"}, {key: "template"}, {key: "spec"}, {key: "containers"}, {item: true, name: "app"}, {key: "image"}}
	if got := changedBy(live, []fieldPath{replicas}, "fjord"); got != "kubectl" {
		t.Errorf("changedBy(replicas) = %q, want kubectl", got)
	}
	sets := ownedSets(live, "fjord")
	if !ownsAny(sets, image) {
		t.Error("fjord should own the image")
	}
	if ownsAny(sets, replicas) {
		t.Error("fjord should not own replicas after kubectl scale")
	}
}
