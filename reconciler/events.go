package reconciler

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fjordhq/fjord/storage"
)

// Reasons of the Kubernetes Events fjord posts about the objects it
// manages, as controllers do (kubectl describe and kubectl get events show
// them next to the object).
const (
	// ReasonDriftReverted: fjord put back a change made outside git, or
	// recreated a deleted object (Normal).
	ReasonDriftReverted = "FjordDriftReverted"
	// ReasonSyncFailed: the app's sync failed; posted on the app's
	// inventory ConfigMap, once per commit and error (Warning).
	ReasonSyncFailed = "FjordSyncFailed"
)

// eventTimeout bounds posting one Event: a courtesy that must not hold a
// sync or a revert up.
const eventTimeout = 5 * time.Second

// maxEventMessage is the API server's limit on an Event's message.
const maxEventMessage = 1024

var gvrEvents = corev1.SchemeGroupVersion.WithResource("events")

// postEvent posts a core/v1 Event about the object u names on cluster c.
// When u carries no UID the live object's is looked up, so kubectl
// describe (which selects by UID) shows it. A failure is logged, never
// returned.
func (r *Reconciler) postEvent(c *cluster, app string, u *unstructured.Unstructured, typ, reason, msg string) {
	if c == nil || u == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	defer cancel()
	uid := string(u.GetUID())
	if uid == "" {
		if m, err := c.mapping(u.GroupVersionKind()); err == nil {
			if live, err := c.resource(m, u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
				uid = string(live.GetUID())
			}
		}
	}
	ns := u.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault // a cluster-scoped object's events live there
	}
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	now := time.Now().UTC().Format(time.RFC3339)
	involved := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "name": u.GetName()}
	if u.GetNamespace() != "" {
		involved["namespace"] = u.GetNamespace()
	}
	if uid != "" {
		involved["uid"] = uid
	}
	ev := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Event",
		"metadata": map[string]any{
			"generateName": u.GetName() + ".",
			"namespace":    ns,
			"labels":       map[string]any{"fjord.dev/event-of": app},
		},
		"involvedObject":     involved,
		"reason":             reason,
		"message":            msg,
		"type":               typ,
		"source":             map[string]any{"component": "fjord"},
		"reportingComponent": "fjord",
		"reportingInstance":  "fjord",
		"firstTimestamp":     now,
		"lastTimestamp":      now,
		"count":              int64(1),
	}}
	if _, err := c.dyn.Resource(gvrEvents).Namespace(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		r.log.Warn("post Kubernetes Event", "app", app, "object", RefOf(u).String(), "reason", reason, "err", err)
	}
}

// driftRevertedEvent posts FjordDriftReverted on the object a drift was
// about; u is the object as fjord applied it (or wants it).
func (r *Reconciler) driftRevertedEvent(c *cluster, app string, u *unstructured.Unstructured, d storage.DriftEvent) {
	if d.Action != storage.DriftReverted && d.Action != storage.DriftRecreated {
		return
	}
	by := d.Manager
	if by == "" {
		by = "an unknown field manager"
	}
	msg := fmt.Sprintf("fjord app %s reverted %v, changed by %s outside git", app, d.Fields, by)
	if d.Deleted {
		msg = fmt.Sprintf("fjord app %s recreated the object, deleted outside git", app)
	}
	r.postEvent(c, app, u, corev1.EventTypeNormal, ReasonDriftReverted, msg)
}

// maxFailedObjectEvents bounds the objects a sync failure posts an Event
// on, so a render refused whole does not flood the namespace.
const maxFailedObjectEvents = 10

// syncFailedEvent posts FjordSyncFailed on the app's inventory ConfigMap,
// and on each of objs the error names (the objects the API server
// refused, so `kubectl describe` of one shows why), when the failure is
// new: another commit or another error than the last attempt's, so a
// resync failing the same way posts nothing. objs may be nil (the render
// itself failed).
func (r *Reconciler) syncFailedEvent(c *cluster, app *Application, objs []*unstructured.Unstructured, prev, now storage.AppStatus) {
	if prev.Sync == storage.SyncError && prev.Error == now.Error && prev.Revision == now.Revision {
		return
	}
	msg := fmt.Sprintf("sync of fjord app %s at %s failed: %s", app.Metadata.Name, short(now.Revision), now.Error)
	ns, name := r.inventoryConfigMap(app)
	cm := &unstructured.Unstructured{}
	cm.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"})
	cm.SetNamespace(ns)
	cm.SetName(name)
	r.postEvent(c, app.Metadata.Name, cm, corev1.EventTypeWarning, ReasonSyncFailed, msg)
	posted := 0
	for _, u := range objs {
		if posted == maxFailedObjectEvents {
			break
		}
		if strings.Contains(now.Error, RefOf(u).String()) {
			r.postEvent(c, app.Metadata.Name, u, corev1.EventTypeWarning, ReasonSyncFailed, msg)
			posted++
		}
	}
}

// objectByRef finds the object of a drift (DriftEvent.Object) among objs.
func objectByRef(objs []*unstructured.Unstructured, id string) *unstructured.Unstructured {
	for _, u := range objs {
		if RefOf(u).String() == id {
			return u
		}
	}
	return nil
}
