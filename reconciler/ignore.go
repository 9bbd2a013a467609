package reconciler

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/itchyny/gojq"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ignoreRules are the app's spec.ignoreDifferences entries that select u.
func ignoreRules(app *Application, u *unstructured.Unstructured) []IgnoreDifference {
	if app == nil || len(app.Spec.IgnoreDifferences) == 0 {
		return nil
	}
	ref := RefOf(u)
	var out []IgnoreDifference
	for _, d := range app.Spec.IgnoreDifferences {
		if d.Matches(ref.Group, ref.Kind, ref.Namespace, ref.Name) {
			out = append(out, d)
		}
	}
	return out
}

// ignoredPaths are the concrete paths (map keys and list indexes) in obj
// that the rules' jsonPointers and jqPathExpressions name, deepest and
// highest index first, so they can be removed in order. A jq expression
// is evaluated on obj as jq's path(EXPR), as Argo CD does with gojq.
func ignoredPaths(rules []IgnoreDifference, obj map[string]any) ([][]any, error) {
	var out [][]any
	var doc any // obj with JSON numbers, as gojq wants them
	for _, d := range rules {
		for _, ptr := range d.JSONPointers {
			if p, ok := pointerPath(obj, ptr); ok {
				out = append(out, p)
			}
		}
		for _, expr := range d.JQPathExpressions {
			if doc == nil {
				b, err := json.Marshal(obj)
				if err != nil {
					return nil, err
				}
				if err := json.Unmarshal(b, &doc); err != nil {
					return nil, err
				}
			}
			q, err := gojq.Parse("path(" + expr + ")")
			if err != nil {
				return nil, fmt.Errorf("ignoreDifferences jqPathExpression %q: %w", expr, err)
			}
			iter := q.Run(doc)
			for {
				v, ok := iter.Next()
				if !ok {
					break
				}
				if _, isErr := v.(error); isErr {
					// A path through a missing or differently shaped
					// field selects nothing in this object.
					break
				}
				if p, ok := v.([]any); ok && len(p) > 0 {
					out = append(out, p)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return pathAfter(out[i], out[j]) })
	return out, nil
}

// pathAfter orders paths so that removing them in order never shifts a
// list index still to be removed: a higher index first.
func pathAfter(a, b []any) bool {
	for k := 0; k < len(a) && k < len(b); k++ {
		ai, aok := a[k].(int)
		bi, bok := b[k].(int)
		if aok && bok && ai != bi {
			return ai > bi
		}
	}
	return len(a) > len(b)
}

// pointerPath resolves an RFC 6901 pointer against obj; ok is false when
// obj has no such field.
func pointerPath(obj map[string]any, ptr string) ([]any, bool) {
	if !strings.HasPrefix(ptr, "/") {
		return nil, false
	}
	var (
		out  []any
		node any = obj
	)
	for _, seg := range strings.Split(ptr[1:], "/") {
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			v, ok := n[seg]
			if !ok {
				return nil, false
			}
			out, node = append(out, seg), v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			out, node = append(out, i), n[i]
		default:
			return nil, false
		}
	}
	return out, len(out) > 0
}

// removePath deletes the field or list item at p from obj.
func removePath(obj map[string]any, p []any) {
	var node any = obj
	for k, step := range p {
		last := k == len(p)-1
		switch n := node.(type) {
		case map[string]any:
			key, _ := step.(string)
			if last {
				delete(n, key)
				return
			}
			if l, isList := n[key].([]any); isList && len(p) == k+2 {
				// The parent of a list item: replace the list.
				if i, ok := p[k+1].(int); ok && i >= 0 && i < len(l) {
					n[key] = append(l[:i:i], l[i+1:]...)
				}
				return
			}
			node = n[key]
		case []any:
			i, _ := step.(int)
			if i < 0 || i >= len(n) {
				return
			}
			node = n[i]
		default:
			return
		}
	}
}

// withoutIgnored returns a copy of want without the fields the app's
// ignoreDifferences name (jsonPointers, jqPathExpressions), or want
// itself when no rule selects it: the form drift is judged on.
func withoutIgnored(app *Application, want *unstructured.Unstructured) *unstructured.Unstructured {
	rules := ignoreRules(app, want)
	if len(rules) == 0 {
		return want
	}
	paths, err := ignoredPaths(rules, want.Object)
	if err != nil || len(paths) == 0 {
		return want
	}
	c := want.DeepCopy()
	for _, p := range paths {
		removePath(c.Object, p)
	}
	return c
}

// ignoredManagers are the managedFieldsManagers of the rules selecting u.
func ignoredManagers(app *Application, u *unstructured.Unstructured) map[string]bool {
	var out map[string]bool
	for _, d := range ignoreRules(app, u) {
		for _, m := range d.ManagedFieldsManagers {
			if out == nil {
				out = map[string]bool{}
			}
			out[m] = true
		}
	}
	return out
}

// body is what fjord sends for t. With syncOption
// RespectIgnoreDifferences=true and an object that exists, the fields
// ignoreDifferences names are left out when fjord no longer owns them
// (another manager, the autoscaler, took them), and so are the fields a
// managedFieldsManagers entry's manager owns: fjord then never takes
// them back. A field fjord still owns is sent as git has it, because
// leaving out a field only fjord owns would remove it from the object.
func (r *Reconciler) body(app *Application, t *target) *unstructured.Unstructured {
	if t.live == nil {
		return t.u
	}
	if !app.SyncOption("RespectIgnoreDifferences") {
		return t.u
	}
	rules := ignoreRules(app, t.u)
	if len(rules) == 0 {
		return t.u
	}
	own := ownedSets(t.live, r.fieldManager)
	c := t.u.DeepCopy()
	paths, _ := ignoredPaths(rules, t.u.Object)
	for _, p := range paths {
		if fp, ok := toFieldPath(t.u.Object, p); ok && ownsAny(own, fp) {
			continue
		}
		removePath(c.Object, p)
	}
	if ms := ignoredManagers(app, t.u); len(ms) > 0 {
		for _, s := range decodeManaged(t.live) {
			if ms[s.manager] {
				dropOwned(c.Object, s.fields)
			}
		}
	}
	return c
}

// toFieldPath converts a concrete path into the form managedFields are
// walked with (list items by their name); ok is false for a list item
// without a name.
func toFieldPath(obj map[string]any, p []any) (fieldPath, bool) {
	var (
		out  fieldPath
		node any = obj
	)
	for _, step := range p {
		switch n := node.(type) {
		case map[string]any:
			key, _ := step.(string)
			out, node = append(out, pathElem{key: key}), n[key]
		case []any:
			i, _ := step.(int)
			if i < 0 || i >= len(n) {
				return nil, false
			}
			item, _ := n[i].(map[string]any)
			name, ok := item["name"].(string)
			if !ok {
				return nil, false
			}
			out, node = append(out, pathElem{item: true, name: name}), n[i]
		default:
			return nil, false
		}
	}
	return out, true
}

// dropOwned removes from obj the leaves a FieldsV1 set holds (f:KEY for
// map keys, k:{"name":..} for named list items).
func dropOwned(obj map[string]any, set map[string]any) {
	for k, sub := range set {
		if !strings.HasPrefix(k, "f:") {
			continue
		}
		key := k[2:]
		if key == "metadata" || key == "apiVersion" || key == "kind" {
			continue
		}
		subSet, _ := sub.(map[string]any)
		v, ok := obj[key]
		if !ok {
			continue
		}
		if len(subSet) == 0 || hasOnlyDot(subSet) {
			delete(obj, key)
			continue
		}
		switch val := v.(type) {
		case map[string]any:
			dropOwned(val, subSet)
		case []any:
			for sk, itemSet := range subSet {
				if !strings.HasPrefix(sk, "k:") {
					continue
				}
				var keyOf map[string]any
				if json.Unmarshal([]byte(sk[2:]), &keyOf) != nil {
					continue
				}
				for _, it := range val {
					if m, ok := it.(map[string]any); ok && m["name"] != nil && m["name"] == keyOf["name"] {
						if is, ok := itemSet.(map[string]any); ok {
							dropOwned(m, is)
						}
					}
				}
			}
		}
	}
}

// hasOnlyDot is true for a set that owns a field as a whole ({".":{}}).
func hasOnlyDot(set map[string]any) bool {
	_, ok := set["."]
	return ok && len(set) == 1
}
