package reconciler_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/reconciler"
)

const corpus = "testdata/applications"

// Every Application and AppProject of the corpus validates.
func TestCorpusValidates(t *testing.T) {
	docs, err := reconciler.ReadDocuments(corpus, nil)
	if err != nil {
		t.Fatal(err)
	}
	apps, projects := 0, 0
	for _, d := range docs {
		if err := reconciler.ValidateDocument(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
		switch d.Kind {
		case "Application":
			apps++
		case "AppProject":
			projects++
		}
	}
	if apps < 30 || projects < 3 {
		t.Errorf("the corpus holds %d Applications and %d AppProjects, want at least 30 and 3", apps, projects)
	}
}

// Every shape of the refused corpus is refused with the messages
// refused/expected.txt lists, and never told to "remove" a field that
// changes what gets deployed.
func TestRefusedCorpus(t *testing.T) {
	exp, err := os.ReadFile(filepath.Join(corpus, "refused", "expected.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for _, line := range strings.Split(string(exp), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f, s, _ := strings.Cut(line, "\t")
		want[f] = append(want[f], s)
	}
	docs, err := reconciler.ReadDocuments(filepath.Join(corpus, "refused"), nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range docs {
		f := filepath.Base(d.Source)
		seen[f] = true
		err := reconciler.ValidateDocument(d)
		var ae *reconciler.AppError
		if !errors.As(err, &ae) || !errors.Is(err, reconciler.ErrInvalidApp) {
			t.Errorf("%s: not refused: %v", d, err)
			continue
		}
		msg := err.Error()
		for _, w := range want[f] {
			if not, ok := strings.CutPrefix(w, "!"); ok {
				if strings.Contains(msg, not) {
					t.Errorf("%s: the refusal says %q:\n%s", d, not, msg)
				}
			} else if !strings.Contains(msg, w) {
				t.Errorf("%s: the refusal does not say %q:\n%s", d, w, msg)
			}
		}
		if strings.Contains(msg, "remove it") {
			t.Errorf("%s: a refusal says remove it:\n%s", d, msg)
		}
		// One problem per field: no line repeats a field another names.
		fields := map[string]bool{}
		for _, p := range ae.Problems {
			field, _, _ := strings.Cut(p, ":")
			if fields[field] {
				t.Errorf("%s: %s is reported twice:\n%s", d, field, msg)
			}
			fields[field] = true
		}
	}
	for f := range want {
		if !seen[f] {
			t.Errorf("expected.txt names %s, which is not in refused/", f)
		}
	}
}
