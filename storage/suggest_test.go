package storage_test

import (
	"testing"

	"github.com/fjordhq/fjord/storage"
)

func TestNearest(t *testing.T) {
	names := []string{"demo", "gitops", "payments", "team/app"}
	for _, c := range []struct{ typed, want string }{
		{"dmeo", "demo"},    // a swap is one edit
		{"demo", ""},        // exists: nothing to suggest
		{"gitop", "gitops"}, // one missing
		{"paymnets", "payments"},
		{"team/ap", "team/app"},
		{"zzzz", ""},          // nothing near
		{"d", ""},             // one letter is no basis for a guess
		{"payments-prod", ""}, // five edits is another name, not a typo
	} {
		if got := storage.Nearest(c.typed, names); got != c.want {
			t.Errorf("Nearest(%q) = %q, want %q", c.typed, got, c.want)
		}
	}
	if got := storage.EditDistance("lsit", "list"); got != 1 {
		t.Errorf("EditDistance(lsit, list) = %d, want 1", got)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"demo", "demo", 0},
		{"dmeo", "demo", 1},
		{"demo", "deno", 1},
		{"app", "apps", 1},
		{"platfrom", "platform", 1},
		{"denoo", "demo", 2},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
		{"ca", "abc", 3},
	} {
		if got := storage.EditDistance(c.a, c.b); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
