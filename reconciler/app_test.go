package reconciler_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/reconciler"
)

// seedApp is the Application of the seed article, unchanged but for its
// repoURL.
const seedApp = `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: nordic-payment-gateway
  namespace: argocd
spec:
  project: default
  source:
    repoURL: REPO
    targetRevision: HEAD
    path: overlays/prod
  destination:
    server: https://kubernetes.default.svc
    namespace: payments
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
    - CreateNamespace=true
`

func TestParseSeedApplication(t *testing.T) {
	app, err := reconciler.ParseApplication([]byte(strings.Replace(seedApp, "REPO", "gitops-infra", 1)))
	if err != nil {
		t.Fatalf("seed Application refused: %v", err)
	}
	if app.Metadata.Name != "nordic-payment-gateway" || app.Spec.Source.Path != "overlays/prod" ||
		app.Spec.Destination.Namespace != "payments" || app.Revision() != "HEAD" {
		t.Errorf("parsed %+v", app)
	}
	if !app.Auto() || !app.Prune() || !app.SelfHeal() || app.AllowEmpty() || !app.CreateNamespace() || app.PruneLast() {
		t.Errorf("policy: auto=%v prune=%v selfHeal=%v allowEmpty=%v createNamespace=%v pruneLast=%v",
			app.Auto(), app.Prune(), app.SelfHeal(), app.AllowEmpty(), app.CreateNamespace(), app.PruneLast())
	}
}

func TestParseApplicationRefuses(t *testing.T) {
	base := strings.Replace(seedApp, "REPO", "gitops-infra", 1)
	cases := []struct {
		name string
		doc  string
		want []string // substrings the error must hold
	}{
		{"helm source", strings.Replace(base, "    path: overlays/prod\n", "    path: overlays/prod\n    helm:\n      valueFiles: [values.yaml]\n", 1),
			[]string{"spec.source.helm", "not supported"}},
		{"two unknown fields", strings.Replace(base, "  project: default\n", "  project: default\n  ignoreDifferences: []\n  revisionHistoryLimit: 3\n", 1),
			[]string{"spec.ignoreDifferences", "spec.revisionHistoryLimit"}},
		{"retry", strings.Replace(base, "    syncOptions:", "    retry:\n      limit: 5\n    syncOptions:", 1),
			[]string{"spec.syncPolicy.retry"}},
		{"finalizers", strings.Replace(base, "  namespace: argocd\n", "  namespace: argocd\n  finalizers:\n  - resources-finalizer.argocd.argoproj.io\n", 1),
			[]string{"metadata.finalizers", "--cascade"}},
		{"other cluster", strings.Replace(base, "https://kubernetes.default.svc", "https://prod.example.com:6443", 1),
			[]string{"spec.destination.server", "prod.example.com"}},
		{"other project", strings.Replace(base, "project: default", "project: payments", 1),
			[]string{"spec.project", "payments"}},
		{"sync option", strings.Replace(base, "- CreateNamespace=true", "- ServerSideApply=true", 1),
			[]string{"ServerSideApply=true", "not supported"}},
		{"wrong kind", strings.Replace(base, "kind: Application", "kind: ApplicationSet", 1),
			[]string{"kind"}},
		{"bad type", strings.Replace(base, "prune: true", "prune: yes please", 1),
			[]string{"prune"}},
		{"path escapes", strings.Replace(base, "path: overlays/prod", "path: ../other", 1),
			[]string{"spec.source.path"}},
		{"status block", base + "status:\n  sync:\n    status: Synced\n",
			[]string{"status"}},
		{"no repoURL", strings.Replace(base, "    repoURL: gitops-infra\n", "", 1),
			[]string{"spec.source.repoURL"}},
		{"not yaml", "{", []string{"YAML"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := reconciler.ParseApplication([]byte(c.doc))
			if !errors.Is(err, reconciler.ErrInvalidApp) {
				t.Fatalf("err = %v, want ErrInvalidApp", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
