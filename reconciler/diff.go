package reconciler

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/fjordhq/fjord/storage"
)

// Diff renders an app at its target revision and returns a unified diff
// of every object that would change: the live object against the result
// of a server-side dry-run apply, so defaults, admission and field
// ownership are the server's, as in `kubectl diff --server-side`. Objects
// that a prune would delete are shown as removed. Nothing is written.
func (r *Reconciler) Diff(ctx context.Context, name string) (string, error) {
	st := r.lookup(name)
	if st == nil {
		return "", fmt.Errorf("app %q: %w", name, storage.ErrNotFound)
	}
	st.mu.Lock()
	app := st.app
	st.mu.Unlock()
	p, err := r.plan(ctx, st, app)
	if err != nil {
		return "", err
	}
	c := p.cluster
	objs := p.objs
	var b strings.Builder
	for _, u := range objs {
		ref := RefOf(u)
		m, err := c.mapping(u.GroupVersionKind())
		if err != nil {
			return "", err
		}
		res := c.resource(m, u.GetNamespace())
		live, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			live, err = nil, nil
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w", ref, err)
		}
		// What a sync would send (RespectIgnoreDifferences leaves fields
		// out), as the server would merge it.
		t := &target{u: u, ref: ref, m: m, live: live}
		merged, err := r.ssa(ctx, app, res, r.body(app, t), true)
		if apierrors.IsNotFound(err) && live == nil {
			// The namespace does not exist yet (CreateNamespace): show
			// the object as git has it.
			merged, err = u, nil
		}
		if err != nil {
			return "", fmt.Errorf("dry-run apply %s: %w", ref, err)
		}
		b.WriteString(unifiedDiff(ref.String(), comparable(live), comparable(merged)))
	}
	for _, e := range Diff(p.prev, inventoryOf(objs)) {
		m, err := c.mapping(e.GVK())
		if err != nil {
			continue
		}
		live, err := c.resource(m, e.Ref.Namespace).Get(ctx, e.Ref.Name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		if v, _ := judgePrune(name, e.Ref, live, false); v != pruneDelete {
			continue
		}
		b.WriteString(unifiedDiff(e.Ref.String()+" (prune)", comparable(live), ""))
	}
	return b.String(), nil
}

// comparable is an object as YAML without the fields every write changes.
func comparable(u *unstructured.Unstructured) string {
	if u == nil {
		return ""
	}
	c := stripNoise(u)
	for _, f := range []string{"uid", "creationTimestamp"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	out, err := yaml.Marshal(c.Object)
	if err != nil {
		return fmt.Sprintf("# %v\n", err)
	}
	return string(out)
}

// unifiedDiff returns a unified diff (3 lines of context) of two texts, or
// "" when they are equal. Manifests are small, so a quadratic LCS is fine.
func unifiedDiff(name, a, b string) string {
	if a == b {
		return ""
	}
	al, bl := splitLines(a), splitLines(b)
	type op struct {
		kind byte // ' ', '-', '+'
		line string
	}
	n, m := len(al), len(bl)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []op
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && al[i] == bl[j]:
			ops = append(ops, op{' ', al[i]})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', al[i]})
			i++
		default:
			ops = append(ops, op{'+', bl[j]})
			j++
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- live/%s\n+++ git/%s\n", name, name)
	const ctx = 3
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		// A hunk from ctx lines before this change to ctx lines after the
		// last change that is closer than 2*ctx to the next.
		start := max(0, k-ctx)
		end := k
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctx {
				end = min(len(ops), end+ctx)
				break
			}
			end = run
		}
		aStart, bStart, aLen, bLen := 1, 1, 0, 0
		for _, o := range ops[:start] {
			if o.kind != '+' {
				aStart++
			}
			if o.kind != '-' {
				bStart++
			}
		}
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				aLen++
			}
			if o.kind != '-' {
				bLen++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", aStart, aLen, bStart, bLen)
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(o.line)
			out.WriteByte('\n')
		}
		k = end
	}
	return out.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
