package main

import (
	"strings"
	"testing"

	"github.com/fjordhq/fjord/storage"
)

func TestDriftFieldsBounded(t *testing.T) {
	d := storage.DriftEvent{Fields: []string{"spec.replicas", "spec.template.spec.containers", "metadata.labels.a", "metadata.labels.b", "data.x"}}
	if got := driftFields(d, false); got != "5: spec.replicas,spec.template.spec.containers,metadata.labels.a (+2 more, -o wide)" {
		t.Errorf("summary = %q", got)
	}
	if got := driftFields(d, true); !strings.HasSuffix(got, "metadata.labels.b,data.x") || !strings.HasPrefix(got, "5: ") {
		t.Errorf("wide = %q", got)
	}
	if got := driftFields(storage.DriftEvent{Deleted: true}, false); got != "deleted" {
		t.Errorf("deleted = %q", got)
	}
}

func TestAppTreeIndentsChildren(t *testing.T) {
	app := func(name, parent string) storage.App {
		return storage.App{Name: name, AppMeta: storage.AppMeta{Parent: parent}}
	}
	// Sorted by name, as storage returns them; a parent filtered out
	// (or gone) leaves its child a root.
	tree := appTree([]storage.App{app("a-child", "root"), app("lonely", "gone"), app("root", ""), app("z-grandchild", "a-child")})
	var got []string
	for _, n := range tree {
		got = append(got, strings.Repeat(".", n.depth)+n.app.Name)
	}
	if strings.Join(got, " ") != "lonely root .a-child ..z-grandchild" {
		t.Errorf("tree = %v", got)
	}
}
