package reconciler_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"testing"

	"github.com/fjordhq/fjord/reconciler"
)

// FuzzParseApplication feeds ParseApplication any document: it never
// panics, refuses with an *AppError wrapping ErrInvalidApp that names at
// least one problem, and an Application it accepts has a valid name and
// survives a JSON round trip unchanged.
func FuzzParseApplication(f *testing.F) {
	f.Add([]byte(seedApp))
	f.Add([]byte(fullApp))
	f.Add([]byte("kind: ApplicationSet\n"))
	f.Add([]byte("{}"))
	f.Add([]byte(""))
	f.Add([]byte("spec: [1, 2]\nmetadata: {name: 3}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte(`{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"name":"x"},"spec":{"source":{"repoURL":"r","path":"p"},"destination":{"server":"https://kubernetes.default.svc","namespace":"n"}}}`))
	name := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		app, err := reconciler.ParseApplication(data)
		if err != nil {
			var ae *reconciler.AppError
			if !errors.As(err, &ae) || !errors.Is(err, reconciler.ErrInvalidApp) || len(ae.Problems) == 0 || err.Error() == "" {
				t.Fatalf("refusal %T %v is not an *AppError naming its problems", err, err)
			}
			return
		}
		if !name.MatchString(app.Metadata.Name) {
			t.Fatalf("accepted an Application named %q", app.Metadata.Name)
		}
		js, err := json.Marshal(app)
		if err != nil {
			t.Fatal(err)
		}
		again, err := reconciler.ParseApplication(js)
		if err != nil {
			t.Fatalf("%s\nparsed, but its JSON form is refused: %v", data, err)
		}
		if !reflect.DeepEqual(app, again) {
			t.Fatalf("round trip changed the Application:\n%+v\n%+v", app, again)
		}
	})
}
