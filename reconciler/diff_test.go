package reconciler

import "testing"

func TestUnifiedDiff(t *testing.T) {
	if got := unifiedDiff("x", "a\nb\n", "a\nb\n"); got != "" {
		t.Errorf("equal texts diff to %q", got)
	}
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"
	b := "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n"
	want := "--- live/x\n+++ git/x\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
	if got := unifiedDiff("x", a, b); got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
	if got := unifiedDiff("x", "", "a\n"); got != "--- live/x\n+++ git/x\n@@ -1,0 +1,1 @@\n+a\n" {
		t.Errorf("creation diff:\n%s", got)
	}
}
