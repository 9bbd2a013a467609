package reconciler

// AppView is what the reconciler holds in memory about one app, for
// read-only views (the web UI).
type AppView struct {
	// TargetRevision is spec.source.targetRevision (HEAD when unset).
	TargetRevision string
	// Waves maps each object the app last applied, named as
	// ObjectRef.String(), to its sync wave; nil before the first sync
	// since fjord started.
	Waves map[string]int
}

// View returns what the reconciler holds about an app; ok is false for
// an app it does not know.
func (r *Reconciler) View(name string) (AppView, bool) {
	st := r.lookup(name)
	if st == nil {
		return AppView{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var v AppView
	if st.app != nil {
		v.TargetRevision = st.app.Revision()
	}
	if len(st.desired) > 0 {
		v.Waves = make(map[string]int, len(st.desired))
		for ref, u := range st.desired {
			w, _ := syncWave(u)
			v.Waves[ref.String()] = w
		}
	}
	return v, true
}
