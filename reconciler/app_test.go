package reconciler_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
		not  []string // substrings it must not hold
	}{
		{"helm passCredentials", strings.Replace(base, "    path: overlays/prod\n", "    path: overlays/prod\n    helm:\n      passCredentials: true\n", 1),
			[]string{"spec.source.helm.passCredentials", "set it to false"}, []string{"remove it"}},
		{"chart from a git repo", strings.Replace(base, "    path: overlays/prod\n", "    chart: redis\n", 1),
			[]string{"spec.source.repoURL", "Helm repository", "oci://"}, []string{"remove it"}},
		{"sources that render nothing", strings.Replace(base, "  source:\n    repoURL: gitops-infra\n    targetRevision: HEAD\n    path: overlays/prod\n", "  sources:\n  - repoURL: a\n    ref: a\n  - repoURL: b\n    ref: a\n", 1),
			[]string{"spec.sources: every source has ref", "spec.sources[1].ref: \"a\" is the ref of an earlier source"}, []string{"repoURL: missing", "remove it"}},
		{"kustomize replicas", strings.Replace(base, "    path: overlays/prod\n", "    path: overlays/prod\n    kustomize:\n      replicas:\n      - name: web\n        count: many\n", 1),
			[]string{"spec.source.kustomize.replicas[0].count", "not a whole number"}, nil},
		{"typo", strings.Replace(base, "    syncOptions:", "    retyr:\n      limit: 5\n    syncOptions:", 1),
			[]string{"spec.syncPolicy.retyr", "check the spelling"}, nil},
		{"server not a URL", strings.Replace(base, "https://kubernetes.default.svc", "prod.example.com:6443", 1),
			[]string{"spec.destination.server", "prod.example.com", "https://HOST"}, nil},
		{"cluster name", strings.Replace(base, "server: https://kubernetes.default.svc", "name: Prod_1", 1),
			[]string{"spec.destination.name", "\"Prod_1\"", "cluster list"}, []string{"server: missing"}},
		{"unknown finalizer", strings.Replace(base, "  namespace: argocd\n", "  namespace: argocd\n  finalizers:\n  - example.com/cleanup\n", 1),
			[]string{"metadata.finalizers", "example.com/cleanup"}, nil},
		{"replace option value", strings.Replace(base, "- CreateNamespace=true", "- Replace=yes", 1),
			[]string{"Replace=yes", "want Replace=true|false"}, []string{"remove it"}},
		{"unknown option", strings.Replace(base, "- CreateNamespace=true", "- CreateNamspace=true", 1),
			[]string{"CreateNamspace=true", "check the spelling"}, nil},
		{"bad propagation", strings.Replace(base, "- CreateNamespace=true", "- PrunePropagationPolicy=later", 1),
			[]string{"foreground|background|orphan"}, nil},
		{"applicationset", strings.Replace(base, "kind: Application", "kind: ApplicationSet", 1),
			[]string{"ApplicationSet", "meanwhile"}, []string{"spec.source"}},
		{"wrong kind", strings.Replace(base, "kind: Application", "kind: Deployment", 1),
			[]string{"kind"}, nil},
		{"bad type keeps the others", strings.Replace(strings.Replace(base, "prune: true", "prune: yes please", 1), "path: overlays/prod", "path: ../other", 1),
			[]string{"prune: want true or false", "spec.source.path"}, nil},
		{"wrong type reported once", strings.Replace(base, "repoURL: gitops-infra", "repoURL: 42", 1),
			[]string{"spec.source.repoURL: want a string"}, []string{"repoURL: missing"}},
		{"label not a string", strings.Replace(base, "  namespace: argocd\n", "  namespace: argocd\n  labels:\n    enabled: true\n", 1),
			[]string{"metadata.labels.enabled", "quote it"}, nil},
		{"sync wave not a number", strings.Replace(base, "  namespace: argocd\n", "  namespace: argocd\n  annotations:\n    argocd.argoproj.io/sync-wave: soon\n", 1),
			[]string{"sync-wave", "not an integer"}, nil},
		{"retry duration", strings.Replace(base, "    syncOptions:", "    retry:\n      limit: 2\n      backoff:\n        duration: fast\n    syncOptions:", 1),
			[]string{"spec.syncPolicy.retry.backoff.duration"}, nil},
		{"jsonnet", strings.Replace(base, "    path: overlays/prod\n", "    path: overlays/prod\n    directory:\n      jsonnet:\n        tlas: [{name: a, value: b}]\n", 1),
			[]string{"spec.source.directory.jsonnet", "jsonnet"}, nil},
		{"ignoreDifferences without kind", strings.Replace(base, "  project: default\n", "  project: default\n  ignoreDifferences:\n  - jsonPointers: [spec/replicas]\n", 1),
			[]string{"spec.ignoreDifferences[0].kind", "jsonPointers[0]"}, nil},
		{"path escapes", strings.Replace(base, "path: overlays/prod", "path: ../other", 1),
			[]string{"spec.source.path"}, nil},
		{"status block", base + "status:\n  sync:\n    status: Synced\n",
			[]string{"status"}, nil},
		{"no repoURL", strings.Replace(base, "    repoURL: gitops-infra\n", "", 1),
			[]string{"spec.source.repoURL"}, nil},
		{"not yaml", "{", []string{"YAML"}, nil},
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
			for _, w := range c.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
		})
	}
}

const fullApp = `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guestbook
  namespace: argocd
  labels:
    team: web
  annotations:
    argocd.argoproj.io/sync-wave: "-2"
    argocd.argoproj.io/manifest-generate-paths: .;/shared
  finalizers:
  - resources-finalizer.argocd.argoproj.io/background
spec:
  project: web
  revisionHistoryLimit: 3
  info:
  - name: owner
    value: web-team
  source:
    repoURL: gitops
    path: apps/guestbook
    directory:
      recurse: true
      include: '{*.yaml,*.yml}'
      exclude: 'test/*'
      jsonnet: {}
  destination:
    name: in-cluster
    namespace: guestbook
  ignoreDifferences:
  - group: apps
    kind: Deployment
    jsonPointers: [/spec/replicas]
    managedFieldsManagers: [hpa]
  syncPolicy:
    automated:
      enabled: false
      prune: true
    retry:
      limit: 4
      backoff:
        duration: 2s
        factor: 3
        maxDuration: 30s
    managedNamespaceMetadata:
      labels:
        tier: web
    syncOptions:
    - CreateNamespace=true
    - ApplyOutOfSyncOnly=true
    - ServerSideApply=true
    - RespectIgnoreDifferences=true
    - PrunePropagationPolicy=orphan
    - FailOnSharedResource=true
    - Validate=false
    - PruneLast=true
`

func TestParseApplicationFields(t *testing.T) {
	a, err := reconciler.ParseApplication([]byte(fullApp))
	if err != nil {
		t.Fatal(err)
	}
	if a.Auto() || a.Prune() {
		t.Errorf("automated.enabled: false must be manual: auto=%v prune=%v", a.Auto(), a.Prune())
	}
	if a.Metadata.Labels["team"] != "web" || a.SyncWave() != -2 || a.Project() != "web" {
		t.Errorf("labels %v wave %d project %q", a.Metadata.Labels, a.SyncWave(), a.Project())
	}
	if got := a.ManifestGeneratePaths(); len(got) != 2 || got[0] != "apps/guestbook" || got[1] != "shared" {
		t.Errorf("manifest-generate-paths = %q", got)
	}
	if c, p := a.DeleteCascade(); !c || p != metav1.DeletePropagationBackground {
		t.Errorf("DeleteCascade = %v %v", c, p)
	}
	for _, o := range []string{"CreateNamespace", "ApplyOutOfSyncOnly", "ServerSideApply", "RespectIgnoreDifferences", "FailOnSharedResource", "PruneLast"} {
		if !a.SyncOption(o) {
			t.Errorf("SyncOption(%s) = false", o)
		}
	}
	if a.Validate() || a.PrunePropagation() != metav1.DeletePropagationOrphan {
		t.Errorf("Validate=%v PrunePropagation=%v", a.Validate(), a.PrunePropagation())
	}
	r, ok := a.RetryPolicy()
	if !ok || r.Limit != 4 {
		t.Fatalf("retry %+v %v", r, ok)
	}
	for n, want := range map[int]time.Duration{1: 2 * time.Second, 2: 6 * time.Second, 3: 18 * time.Second, 4: 30 * time.Second} {
		if got := r.Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}
	d := a.Spec.IgnoreDifferences
	if len(d) != 1 || !d[0].Matches("apps", "Deployment", "x", "y") || d[0].Matches("", "Deployment", "x", "y") {
		t.Errorf("ignoreDifferences %+v", d)
	}
	if a.Spec.Source.Directory == nil || !a.Spec.Source.Directory.Recurse || *a.Spec.RevisionHistoryLimit != 3 || a.Spec.Info[0].Value != "web-team" {
		t.Errorf("spec %+v", a.Spec)
	}
	if a.Spec.SyncPolicy.ManagedNamespaceMetadata.Labels["tier"] != "web" {
		t.Errorf("managedNamespaceMetadata %+v", a.Spec.SyncPolicy.ManagedNamespaceMetadata)
	}
	seed, _ := reconciler.ParseApplication([]byte(strings.Replace(seedApp, "REPO", "x", 1)))
	if c, _ := seed.DeleteCascade(); c || !seed.Validate() || seed.PrunePropagation() != metav1.DeletePropagationBackground {
		t.Errorf("seed defaults: cascade=%v validate=%v propagation=%v", c, seed.Validate(), seed.PrunePropagation())
	}
	if _, ok := seed.RetryPolicy(); ok {
		t.Error("seed has no retry")
	}
}
