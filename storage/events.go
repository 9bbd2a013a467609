package storage

// EventKind says what kind of record an Event is about.
type EventKind string

// Event kinds.
const (
	// EventApp: an app's configuration or status changed (apply, a
	// status or health update, a sync recorded, a drift recorded).
	EventApp EventKind = "app"
	// EventAppDeleted: an app was deleted.
	EventAppDeleted EventKind = "app-deleted"
	// EventMirror: a mirror's status changed (a sync or a
	// history-protection event was recorded).
	EventMirror EventKind = "mirror"
)

// Event says that the record Name of Kind changed. It carries no data:
// whoever needs the new state reads it from the store, so an event can
// never disagree with what the store holds.
type Event struct {
	Kind EventKind `json:"kind"`
	Name string    `json:"name"`
}

// SubscribeEvents returns a subscription to every app and mirror record
// change committed from now on, in the order the transactions committed;
// ref changes have their own, Subscribe.
func (s *Store) SubscribeEvents() *Subscription[Event] {
	return s.events.subscribe()
}

// published announces ev when the transaction that made it returned no
// error, and returns that error, so writers end with
// `return s.published(err, ev)`.
func (s *Store) published(err error, ev Event) error {
	if err != nil {
		return err
	}
	s.events.publish(ev)
	return nil
}

// publishOps announces the app and mirror records a change applied from
// another store wrote (a follower applying its primary's change log), so
// a follower's pages stay live as the primary's do. Each record once.
func (s *Store) publishOps(ops []Op) {
	seen := map[Event]bool{}
	// An app deleted by the change is announced as deleted only, as
	// DeleteApp does, not also as changed by the removal of its logs.
	for _, op := range ops {
		if op.Bucket == string(bucketApps) && op.Delete {
			seen[Event{Kind: EventApp, Name: string(op.Key)}] = true
		}
	}
	for _, op := range ops {
		var ev Event
		switch op.Bucket {
		case string(bucketApps):
			ev = Event{Kind: EventApp, Name: string(op.Key)}
			if op.Delete {
				ev.Kind = EventAppDeleted
			}
		case string(bucketAppSyncs), string(bucketAppDrifts), string(bucketAppInv):
			ev = Event{Kind: EventApp, Name: op.Nested}
			if ev.Name == "" {
				ev.Name = string(op.Key)
			}
		case string(bucketMirrors):
			ev = Event{Kind: EventMirror, Name: string(op.Key)}
		case string(bucketMirrorSyncs), string(bucketMirrorEvts):
			ev = Event{Kind: EventMirror, Name: op.Nested}
		default:
			continue
		}
		if ev.Name == "" || seen[ev] {
			continue
		}
		seen[ev] = true
		_ = s.published(nil, ev)
	}
}
