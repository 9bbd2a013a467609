// Package reconciler is fjord's GitOps engine. It reads Applications in
// Argo CD's format (the subset in app.go), renders the repo tree at the
// resolved commit with kustomize in memory (render.go), applies the result
// with server-side apply (apply.go), deletes what git dropped (prune.go)
// against an inventory kept in bbolt and in the cluster (inventory.go),
// reverts or reports changes made outside git (drift.go) from label-scoped
// watches (watch.go), and rates each object's health with kstatus
// (health.go).
//
// A sync starts at once on a ref change of the app's repo (a push or a
// mirror sync, through storage's notifications), on a periodic resync, on
// `fjord app sync`, and when fjord starts. Only objects whose rendered form
// changed or whose live form drifted are sent, so a resync of an unchanged
// repo costs no API request.
package reconciler
