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
