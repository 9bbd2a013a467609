package reconciler

import (
	"reflect"
	"testing"
)

func TestDiff(t *testing.T) {
	dep := Entry{Ref: ObjectRef{Group: "apps", Kind: "Deployment", Namespace: "ns", Name: "web"}, Version: "v1"}
	svc := Entry{Ref: ObjectRef{Kind: "Service", Namespace: "ns", Name: "web"}, Version: "v1"}
	cm := Entry{Ref: ObjectRef{Kind: "ConfigMap", Namespace: "ns", Name: "cfg"}, Version: "v1"}
	crb := Entry{Ref: ObjectRef{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding", Name: "web"}, Version: "v1"}
	inv := func(es ...Entry) Inventory {
		out := Inventory{}
		for _, e := range es {
			out[e.Ref] = e
		}
		return out
	}
	cases := []struct {
		name      string
		old, next Inventory
		want      []Entry
	}{
		{"both empty", inv(), inv(), nil},
		{"first sync", inv(), inv(dep, svc), nil},
		{"unchanged", inv(dep, svc), inv(dep, svc), nil},
		{"one removed", inv(dep, svc, cm), inv(dep, svc), []Entry{cm}},
		{"all removed, sorted by ID", inv(dep, svc, cm, crb), inv(), []Entry{crb, cm, svc, dep}},
		{"version change is not removal", inv(dep), inv(Entry{Ref: dep.Ref, Version: "v2"}), nil},
		{"replaced", inv(cm), inv(svc), []Entry{cm}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Diff(c.old, c.next); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Diff = %v, want %v", got, c.want)
			}
		})
	}
}

func TestIDRoundTrip(t *testing.T) {
	for _, ref := range []ObjectRef{
		{Group: "apps", Kind: "Deployment", Namespace: "ns", Name: "web"},
		{Kind: "Namespace", Name: "payments"},
		{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:odd_name_with_underscores"},
	} {
		got, err := ParseID(ref.ID())
		if err != nil || got != ref {
			t.Errorf("ParseID(%q) = %+v, %v; want %+v", ref.ID(), got, err, ref)
		}
	}
	if _, err := ParseID("nope"); err == nil {
		t.Error("ParseID(nope) succeeded")
	}
}
