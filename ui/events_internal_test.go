package ui

import (
	"reflect"
	"testing"
)

// A stream that is not read keeps one pending event per record, not one
// per change.
func TestPendingEventsCoalesce(t *testing.T) {
	p := newPendingEvents()
	web := liveEvent{Kind: "app", Name: "web"}
	refs := liveEvent{Kind: "refs", Name: "web"}
	for range 1000 {
		p.add(web)
		p.add(refs)
	}
	if got := p.take(); !reflect.DeepEqual(got, []liveEvent{web, refs}) {
		t.Fatalf("pending after 2000 changes of two records: %v", got)
	}
	if got := p.take(); len(got) != 0 {
		t.Fatalf("pending after take: %v", got)
	}
	p.add(web)
	if got := p.take(); !reflect.DeepEqual(got, []liveEvent{web}) {
		t.Fatalf("a change after take: %v", got)
	}
}
