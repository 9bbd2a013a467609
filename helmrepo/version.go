package helmrepo

import (
	"fmt"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// isExact reports whether want names one version rather than a range.
func isExact(want string) bool {
	_, err := semver.StrictNewVersion(strings.TrimPrefix(want, "v"))
	return err == nil
}

// errNoMatch is resolve's error when no version fits; callers add where
// they looked.
type errNoMatch struct {
	want   string
	newest []string
}

func (e *errNoMatch) Error() string {
	what := "no version"
	if e.want != "" {
		what = fmt.Sprintf("no version matching %q", e.want)
	}
	if len(e.newest) == 0 {
		return what + " (it lists no versions)"
	}
	return fmt.Sprintf("%s (newest: %s)", what, strings.Join(e.newest, ", "))
}

// resolve picks from versions the one want names: an exact version string
// first, else the highest that satisfies want as a semver range (Masterminds
// semver, as Helm reads it); empty want is the highest stable version.
func resolve(versions []string, want string) (string, error) {
	if want != "" {
		for _, v := range versions {
			if v == want {
				return v, nil
			}
		}
	}
	expr := want
	if expr == "" {
		expr = "*"
	}
	c, err := semver.NewConstraint(expr)
	if err != nil {
		return "", fmt.Errorf("version %q is neither a chart version nor a semver range (e.g. 1.2.3, ^1.2, ~1.2.0, >=1.0 <2.0, 1.x): %w", want, err)
	}
	var best *semver.Version
	bestRaw := ""
	var all []*semver.Version
	for _, v := range versions {
		sv, err := semver.NewVersion(v)
		if err != nil {
			continue
		}
		all = append(all, sv)
		if c.Check(sv) && (best == nil || sv.GreaterThan(best)) {
			best, bestRaw = sv, v
		}
	}
	if best != nil {
		return bestRaw, nil
	}
	sort.Sort(sort.Reverse(semver.Collection(all)))
	e := &errNoMatch{want: want}
	for i := 0; i < len(all) && i < 5; i++ {
		e.newest = append(e.newest, all[i].Original())
	}
	return "", e
}
