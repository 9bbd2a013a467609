package reconciler

import (
	"context"
	"sort"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/client-go/util/workqueue"

	"github.com/fjordhq/fjord/storage"
)

// healthRank orders kstatus results from best to worst; an app is as
// healthy as its least healthy object.
var healthRank = map[status.Status]int{
	status.CurrentStatus:     0,
	status.UnknownStatus:     1,
	status.InProgressStatus:  2,
	status.NotFoundStatus:    3,
	status.TerminatingStatus: 4,
	status.FailedStatus:      5,
}

// health computes each inventory object's kstatus from the watch cache
// and the app's, the worst of them. An app with no objects is Current.
func (r *Reconciler) health(ctx context.Context, c *cluster, inv Inventory) (string, []storage.ObjectHealth) {
	worst := status.CurrentStatus
	out := make([]storage.ObjectHealth, 0, len(inv))
	for ref, e := range inv {
		h := storage.ObjectHealth{ID: ref.String()}
		s, msg := status.UnknownStatus, ""
		if m, err := c.mapping(e.GVK()); err == nil {
			if live, watched, err := c.watcher().get(ctx, m.Resource, ref.Namespace, ref.Name); err == nil && watched {
				if live == nil {
					s, msg = status.NotFoundStatus, "not in the cluster"
				} else if res, err := status.Compute(live); err == nil {
					s, msg = res.Status, res.Message
				} else {
					msg = err.Error()
				}
			}
		}
		h.Status, h.Message = string(s), msg
		if healthRank[s] > healthRank[worst] {
			worst = s
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return string(worst), out
}

// healthDebounce gathers the watch events of a rollout into one health
// update per app.
const healthDebounce = 500 * time.Millisecond

// healthChanged schedules a health update of an app whose object changed,
// so status follows a rollout without waiting for the next sync.
func (r *Reconciler) healthChanged(app string) { r.work.Load().health.AddAfter(app, healthDebounce) }

func (r *Reconciler) healthWorker(ctx context.Context, queue workqueue.TypedDelayingInterface[string]) {
	for {
		name, quit := queue.Get()
		if quit {
			return
		}
		st := r.lookup(name)
		if st != nil {
			st.mu.Lock()
			app, c := st.app, st.cluster
			st.mu.Unlock()
			if app == nil || c == nil || c.down() {
				queue.Done(name)
				continue
			}
			if inv, err := r.previousInventory(ctx, c, app); err == nil {
				h, objs := r.health(ctx, c, inv)
				_ = r.store.UpdateAppStatus(name, func(s *storage.AppStatus) { s.Health, s.Objects = h, objs })
			}
		}
		queue.Done(name)
	}
}
