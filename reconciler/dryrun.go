package reconciler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// dryRunConcurrency bounds the dry-run requests in flight: they write
// nothing, so more of them than of applies can run at once.
const dryRunConcurrency = 32

// dryRun asks the API server to validate, by a server-side dry-run
// apply, every object the sync would send, all at once (as
// fluxcd/pkg/ssa validates a whole set before applying any of it). It
// fails naming every object the server refused; then nothing is applied
// and the last good state stays. Not dry-run, because the server cannot
// judge them before the sync's own first writes: objects of a kind this
// render's CRDs define (or SkipDryRunOnMissingResource=true), objects in
// a namespace this sync creates, and Replace=true objects (replaced, not
// merged). A Force=true object the server refuses as invalid passes: its
// apply recreates it.
func (r *Reconciler) dryRun(ctx context.Context, app *Application, targets map[ObjectRef]*target, p *plan) error {
	newNS := map[string]bool{}
	for _, u := range p.first {
		if t := targets[RefOf(u)]; u.GetKind() == "Namespace" && t.send && t.live == nil {
			newNS[u.GetName()] = true
		}
	}
	var (
		mu      sync.Mutex
		refused []string
	)
	var list []*target
	for _, t := range targets {
		if t.send && t.m != nil && !newNS[t.ref.Namespace] && !hasOption(t.u, AnnotationSyncOptions, optReplace) {
			list = append(list, t)
		}
	}
	each(ctx, dryRunConcurrency, list, func(ctx context.Context, t *target) {
		_, err := r.ssa(ctx, app, r.resource(t.m, t.ref.Namespace), r.body(app, t), true)
		if apierrors.IsInvalid(err) && t.live != nil && hasOption(t.u, AnnotationSyncOptions, optForce) {
			// Force=true: the apply will delete and recreate what the
			// server refuses to change in place (an immutable field).
			err = nil
		}
		if err != nil && ctx.Err() == nil {
			mu.Lock()
			refused = append(refused, fmt.Sprintf("%s: %v", t.ref, err))
			mu.Unlock()
		}
	})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dry run: %w", err)
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		return errors.New("the API server refused " + plural(len(refused), "object") + " in the dry run, so nothing was applied (fix it in git): " + strings.Join(firstN(refused, 10), "; "))
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
