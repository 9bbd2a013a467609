// Package deploytest checks what deploy/ ships: the Kustomize base and
// overlays that run fjord in a cluster, the example GitOps repo, the
// systemd unit and the Dockerfile. It holds only tests.
//
// Manifests are rendered with the kustomize library (the same krusty that
// `kubectl kustomize` and fjord's reconciler use) and applied with a
// server-side dry run to a real kube-apiserver (internal/testenv), so the
// API server's own validation, defaulting and admission (Pod Security
// included) judge them. Like every test that needs the API server, these
// fail when its binaries are missing (`make testenv` builds them) unless
// FJORD_SKIP_KUBE=1.
package deploytest
