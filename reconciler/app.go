package reconciler

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/fjordhq/fjord/storage"
)

// InClusterServer is the destination.server of the cluster of fjord's own
// kubeconfig, as in Argo CD.
const InClusterServer = "https://kubernetes.default.svc"

// InClusterName is the destination.name Argo CD gives that cluster.
const InClusterName = storage.InClusterName

// Application finalizers: with one of them, deleting the app deletes its
// objects (foreground unless the suffix says otherwise), as in Argo CD.
const (
	FinalizerResources           = "resources-finalizer.argocd.argoproj.io"
	FinalizerResourcesBackground = FinalizerResources + "/background"
	FinalizerResourcesForeground = FinalizerResources + "/foreground"
)

// Argo CD annotations fjord reads on Applications.
const (
	// AnnotationSyncWave orders child Applications (and objects): an
	// integer, 0 when absent.
	AnnotationSyncWave = "argocd.argoproj.io/sync-wave"
	// AnnotationManifestGeneratePaths lists, separated by ';', the paths
	// whose change makes a commit re-render the app.
	AnnotationManifestGeneratePaths = "argocd.argoproj.io/manifest-generate-paths"
)

// ErrInvalidApp marks an Application document fjord refuses; the message
// names the field and what to do.
var ErrInvalidApp = errors.New("invalid Application")

// AppError is a refused Application: every problem, each naming the field
// and what to do. It matches ErrInvalidApp with errors.Is.
type AppError struct {
	// Name is metadata.name, or "(unnamed)".
	Name string
	// Problems are one line each, in field order.
	Problems []string
}

func (e *AppError) Error() string {
	return fmt.Sprintf("%v %s:\n  - %s", ErrInvalidApp, e.Name, strings.Join(e.Problems, "\n  - "))
}

// Is makes errors.Is(err, ErrInvalidApp) true.
func (e *AppError) Is(target error) bool { return target == ErrInvalidApp }

// Application is the subset of Argo CD's Application that fjord supports.
// Every field it holds has an effect; ParseApplication refuses any other.
type Application struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   AppMetadata     `json:"metadata"`
	Spec       ApplicationSpec `json:"spec"`
}

// AppMetadata names an Application. Namespace is accepted for Argo CD
// compatibility (usually "argocd") and otherwise unused: fjord's apps are
// one flat namespace of names.
type AppMetadata struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	// Labels are stored and select apps (`fjord app list -l`).
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are stored; sync-wave and manifest-generate-paths
	// have an effect.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Finalizers: FinalizerResources (and its /background, /foreground
	// forms) makes a delete cascade.
	Finalizers []string `json:"finalizers,omitempty"`
}

// ApplicationSpec is spec.
type ApplicationSpec struct {
	// Project names a fjord project; "" means "default".
	Project string `json:"project,omitempty"`
	// Source is the one source of a single-source app; unused when
	// Sources is set.
	Source Source `json:"source"`
	// Sources are the sources of a multi-source app, rendered in order
	// into one set of objects; a source with ref (and no path or chart)
	// only lends its files to the Helm sources' valueFiles ($ref/...).
	Sources     []Source    `json:"sources,omitempty"`
	Destination Destination `json:"destination"`
	SyncPolicy  SyncPolicy  `json:"syncPolicy"`
	// IgnoreDifferences names fields that are not drift.
	IgnoreDifferences []IgnoreDifference `json:"ignoreDifferences,omitempty"`
	// RevisionHistoryLimit bounds `fjord app history`; nil keeps the
	// storage default (100).
	RevisionHistoryLimit *int64 `json:"revisionHistoryLimit,omitempty"`
	// Info is shown by `fjord app get`.
	Info []InfoItem `json:"info,omitempty"`
}

// Source is spec.source (or one of spec.sources).
type Source struct {
	// RepoURL names a repo of this fjord (its name, its SSH URL, or the
	// upstream URL of a pull mirror) or, with Chart, a Helm repository
	// (https://...) or OCI registry (oci://...).
	RepoURL string `json:"repoURL"`
	// TargetRevision is HEAD (default), a branch, a tag or a full commit;
	// with Chart, the chart version or a semver range ("" the newest).
	TargetRevision string `json:"targetRevision,omitempty"`
	// Path is the directory in the repo to render; "" or "." is the root.
	// A directory holding Chart.yaml is rendered as a Helm chart.
	Path string `json:"path,omitempty"`
	// Chart names a chart of the Helm repository RepoURL.
	Chart string `json:"chart,omitempty"`
	// Directory reads a plain directory (no kustomization) with these
	// settings; nil reads its top level.
	Directory *DirectorySource `json:"directory,omitempty"`
	// Helm sets how a chart is rendered.
	Helm *HelmSource `json:"helm,omitempty"`
	// Kustomize edits the kustomization before it is built.
	Kustomize *KustomizeSource `json:"kustomize,omitempty"`
	// Ref names this source for the valueFiles of the others: $ref/path.
	Ref string `json:"ref,omitempty"`
	// Name is Argo CD's name of the source; `app get` shows it, nothing
	// else reads it.
	Name string `json:"name,omitempty"`
}

// IsChart reports whether the source is a chart of a Helm repository.
func (s Source) IsChart() bool { return s.Chart != "" }

// ChartRepoURL is the Helm repository of a chart source. A repoURL
// without a scheme names an OCI registry, as in Argo CD
// (registry-1.docker.io/bitnamicharts). Whatever asks which apps use a
// repository (admin's helmrepo delete) goes through it too, so both agree.
func (s Source) ChartRepoURL() string {
	if !strings.Contains(s.RepoURL, "://") {
		return "oci://" + s.RepoURL
	}
	return s.RepoURL
}

// refOnly reports whether the source only lends its files ($ref) and
// renders nothing itself, as in Argo CD.
func (s Source) refOnly() bool { return s.Ref != "" && s.Path == "" && s.Chart == "" }

// HelmSource is spec.source.helm.
type HelmSource struct {
	// ValueFiles are read in order, relative to the chart's directory,
	// or $ref/path in another source of the app.
	ValueFiles []string `json:"valueFiles,omitempty"`
	// Values is a YAML document of values; ValuesObject, when set, is
	// used instead. They override the value files.
	Values       string         `json:"values,omitempty"`
	ValuesObject map[string]any `json:"valuesObject,omitempty"`
	// Parameters are --set (or --set-string with ForceString) values,
	// over all of the above.
	Parameters []HelmParameter `json:"parameters,omitempty"`
	// FileParameters are --set-file values: a key set to a file's text.
	FileParameters []HelmFileParameter `json:"fileParameters,omitempty"`
	// ReleaseName is .Release.Name; "" means the app's name.
	ReleaseName string `json:"releaseName,omitempty"`
	// Namespace is .Release.Namespace; "" means destination.namespace.
	Namespace string `json:"namespace,omitempty"`
	// SkipCrds leaves out the chart's crds/ directory.
	SkipCrds bool `json:"skipCrds,omitempty"`
	// SkipTests leaves out test hooks (which are never run anyway).
	SkipTests bool `json:"skipTests,omitempty"`
	// SkipSchemaValidation does not check values against values.schema.json.
	SkipSchemaValidation bool `json:"skipSchemaValidation,omitempty"`
	// PassCredentials false is all fjord supports.
	PassCredentials bool `json:"passCredentials,omitempty"`
	// IgnoreMissingValueFiles skips value files that do not exist.
	IgnoreMissingValueFiles bool `json:"ignoreMissingValueFiles,omitempty"`
	// Version is the Helm major version: "" or v3.
	Version string `json:"version,omitempty"`
	// KubeVersion and APIVersions override what the destination cluster
	// reports for .Capabilities.
	KubeVersion string   `json:"kubeVersion,omitempty"`
	APIVersions []string `json:"apiVersions,omitempty"`
}

// HelmParameter is one entry of helm.parameters.
type HelmParameter struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	ForceString bool   `json:"forceString,omitempty"`
}

// HelmFileParameter is one entry of helm.fileParameters.
type HelmFileParameter struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// KustomizeSource is spec.source.kustomize: edits fjord makes to the
// kustomization before kustomize builds it, as Argo CD's kustomize edit.
type KustomizeSource struct {
	// Images are kustomize edit set image arguments: name=newName:tag,
	// name:tag or name@digest.
	Images            []string          `json:"images,omitempty"`
	NamePrefix        string            `json:"namePrefix,omitempty"`
	NameSuffix        string            `json:"nameSuffix,omitempty"`
	CommonLabels      map[string]string `json:"commonLabels,omitempty"`
	CommonAnnotations map[string]string `json:"commonAnnotations,omitempty"`
	// ForceCommonLabels and ForceCommonAnnotations override keys the
	// kustomization already sets to other values.
	ForceCommonLabels      bool `json:"forceCommonLabels,omitempty"`
	ForceCommonAnnotations bool `json:"forceCommonAnnotations,omitempty"`
	// Namespace sets the kustomization's namespace.
	Namespace string `json:"namespace,omitempty"`
	// Replicas set the replica count of named workloads.
	Replicas []KustomizeReplica `json:"replicas,omitempty"`
	// Patches are kustomize patches (patch text or path, with target).
	Patches []map[string]any `json:"patches,omitempty"`
	// Components are paths of kustomize components, relative to the path.
	Components []string `json:"components,omitempty"`
	// IgnoreMissingComponents skips components that do not exist.
	IgnoreMissingComponents bool `json:"ignoreMissingComponents,omitempty"`
	// Version is ignored: fjord builds with the kustomize it embeds.
	Version string `json:"version,omitempty"`
}

// KustomizeReplica is one entry of kustomize.replicas. Count is a number
// or a string holding one, as Argo CD reads it.
type KustomizeReplica struct {
	Name  string          `json:"name"`
	Count json.RawMessage `json:"count"`
}

// DirectorySource is spec.source.directory.
type DirectorySource struct {
	// Recurse reads subdirectories too.
	Recurse bool `json:"recurse,omitempty"`
	// Include is a glob (or {a,b} of globs) of the files to read, matched
	// against the path relative to source.path; "" reads every
	// *.yaml, *.yml and *.json.
	Include string `json:"include,omitempty"`
	// Exclude is a glob (or {a,b} of globs) of files to leave out.
	Exclude string `json:"exclude,omitempty"`
}

// Destination is spec.destination.
type Destination struct {
	// Server is the API server URL: InClusterServer for fjord's own
	// cluster, or the server of a cluster of `fjord cluster add`. Empty
	// when Name is given.
	Server string `json:"server,omitempty"`
	// Name is InClusterName or the name of a cluster of `fjord cluster
	// add`; empty when Server is given.
	Name string `json:"name,omitempty"`
	// Namespace is given to namespaced objects that have none.
	Namespace string `json:"namespace,omitempty"`
}

// SyncPolicy is spec.syncPolicy.
type SyncPolicy struct {
	// Automated is nil for manual sync: fjord renders and reports but
	// applies only on `fjord app sync`.
	Automated   *Automated `json:"automated,omitempty"`
	SyncOptions []string   `json:"syncOptions,omitempty"`
	// Retry retries a failed sync; nil retries on the next push or
	// resync only.
	Retry *RetryStrategy `json:"retry,omitempty"`
	// ManagedNamespaceMetadata labels and annotates the namespace
	// CreateNamespace=true creates.
	ManagedNamespaceMetadata *ManagedNamespaceMetadata `json:"managedNamespaceMetadata,omitempty"`
}

// Automated is spec.syncPolicy.automated.
type Automated struct {
	// Enabled false (Argo CD 3) makes the policy manual while keeping
	// its settings; nil means true.
	Enabled    *bool `json:"enabled,omitempty"`
	Prune      bool  `json:"prune,omitempty"`
	SelfHeal   bool  `json:"selfHeal,omitempty"`
	AllowEmpty bool  `json:"allowEmpty,omitempty"`
}

// RetryStrategy is spec.syncPolicy.retry.
type RetryStrategy struct {
	// Limit is how many retries follow a failed sync; negative means no
	// limit, 0 none (Argo CD's meanings).
	Limit   int64    `json:"limit,omitempty"`
	Backoff *Backoff `json:"backoff,omitempty"`
}

// Backoff is spec.syncPolicy.retry.backoff. Durations are Go durations
// ("5s", "3m") or a number of seconds ("30"), as Argo CD reads them.
type Backoff struct {
	Duration    string `json:"duration,omitempty"`
	Factor      *int64 `json:"factor,omitempty"`
	MaxDuration string `json:"maxDuration,omitempty"`
}

// ManagedNamespaceMetadata is spec.syncPolicy.managedNamespaceMetadata.
type ManagedNamespaceMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// InfoItem is one entry of spec.info.
type InfoItem struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// IgnoreDifference is one entry of spec.ignoreDifferences: in the objects
// it selects (Kind required; Group "" is the core group; Name and
// Namespace empty select all), the fields it names are not drift.
type IgnoreDifference struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// JSONPointers are RFC 6901 pointers such as /spec/replicas.
	JSONPointers []string `json:"jsonPointers,omitempty"`
	// JQPathExpressions are jq paths such as .spec.template.spec.containers[].image.
	JQPathExpressions []string `json:"jqPathExpressions,omitempty"`
	// ManagedFieldsManagers: fields these managers own are not drift.
	ManagedFieldsManagers []string `json:"managedFieldsManagers,omitempty"`
}

// Matches reports whether the entry selects an object of that group,
// kind, namespace and name.
func (d IgnoreDifference) Matches(group, kind, namespace, name string) bool {
	return d.Group == group && d.Kind == kind &&
		(d.Name == "" || d.Name == name) && (d.Namespace == "" || d.Namespace == namespace)
}

// Auto reports whether commits are applied without `fjord app sync`.
func (a *Application) Auto() bool {
	au := a.Spec.SyncPolicy.Automated
	return au != nil && (au.Enabled == nil || *au.Enabled)
}

// Prune reports whether automated syncs delete objects git dropped.
func (a *Application) Prune() bool { return a.Auto() && a.Spec.SyncPolicy.Automated.Prune }

// SelfHeal reports whether drift is reverted (rather than reported).
func (a *Application) SelfHeal() bool { return a.Auto() && a.Spec.SyncPolicy.Automated.SelfHeal }

// AllowEmpty reports whether an empty render may prune everything.
func (a *Application) AllowEmpty() bool { return a.Auto() && a.Spec.SyncPolicy.Automated.AllowEmpty }

// CreateNamespace reports syncOption CreateNamespace=true.
func (a *Application) CreateNamespace() bool { return a.SyncOption("CreateNamespace") }

// PruneLast reports syncOption PruneLast=true: prune after every wave.
func (a *Application) PruneLast() bool { return a.SyncOption("PruneLast") }

// SyncOption reports whether syncOption name is set to true, such as
// a.SyncOption("ApplyOutOfSyncOnly"). The last setting of a name wins.
func (a *Application) SyncOption(name string) bool {
	v, _ := a.syncOptionValue(name)
	return v == "true"
}

// Validate reports whether objects are validated by the API server: true
// unless syncOption Validate=false.
func (a *Application) Validate() bool {
	v, ok := a.syncOptionValue("Validate")
	return !ok || v != "false"
}

// PrunePropagation is the propagation policy of prune deletes:
// syncOption PrunePropagationPolicy; background when unset, as fjord
// always pruned (the object goes at once, the garbage collector takes its
// dependents after).
func (a *Application) PrunePropagation() metav1.DeletionPropagation {
	switch v, _ := a.syncOptionValue("PrunePropagationPolicy"); v {
	case "foreground":
		return metav1.DeletePropagationForeground
	case "orphan":
		return metav1.DeletePropagationOrphan
	default:
		return metav1.DeletePropagationBackground
	}
}

func (a *Application) syncOptionValue(name string) (string, bool) {
	val, found := "", false
	for _, o := range a.Spec.SyncPolicy.SyncOptions {
		if k, v, ok := strings.Cut(o, "="); ok && k == name {
			val, found = v, true
		}
	}
	return val, found
}

// DeleteCascade reports whether deleting the app deletes its objects (a
// resources finalizer) and with which propagation.
func (a *Application) DeleteCascade() (bool, metav1.DeletionPropagation) {
	cascade, policy := false, metav1.DeletePropagationForeground
	for _, f := range a.Metadata.Finalizers {
		switch f {
		case FinalizerResources, FinalizerResourcesForeground:
			cascade, policy = true, metav1.DeletePropagationForeground
		case FinalizerResourcesBackground:
			cascade, policy = true, metav1.DeletePropagationBackground
		}
	}
	return cascade, policy
}

// Project is the app's project, "default" when unset.
func (a *Application) Project() string {
	if a.Spec.Project == "" {
		return "default"
	}
	return a.Spec.Project
}

// SyncWave is the app's argocd.argoproj.io/sync-wave, 0 when unset.
func (a *Application) SyncWave() int {
	w, _ := strconv.Atoi(strings.TrimSpace(a.Metadata.Annotations[AnnotationSyncWave]))
	return w
}

// ManifestGeneratePaths are the paths of the manifest-generate-paths
// annotation, relative to the repo root (a relative entry is joined to
// source.path), without leading '/'. Nil when the annotation is unset.
func (a *Application) ManifestGeneratePaths() []string {
	v, ok := a.Metadata.Annotations[AnnotationManifestGeneratePaths]
	if !ok {
		return nil
	}
	out := []string{}
	for _, p := range strings.Split(v, ";") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "/") {
			p = cleanRepoPath(p)
		} else {
			p = cleanRepoPath(a.AllSources()[0].Path + "/" + p)
		}
		out = append(out, p)
	}
	return out
}

// Revision is the (first) source's target revision, HEAD when unset.
func (a *Application) Revision() string {
	return orDefault(a.AllSources()[0].TargetRevision, "HEAD")
}

// Retry is a parsed spec.syncPolicy.retry.
type Retry struct {
	// Limit is the number of retries; negative means no limit.
	Limit int
	// Duration is the first wait, Factor its growth, MaxDuration its cap.
	Duration    time.Duration
	Factor      int64
	MaxDuration time.Duration
}

// Argo CD's retry defaults.
const (
	defaultRetryDuration    = 5 * time.Second
	defaultRetryFactor      = 2
	defaultRetryMaxDuration = 3 * time.Minute
)

// RetryPolicy returns the app's retry strategy; ok is false when the app
// has none or its limit is 0.
func (a *Application) RetryPolicy() (Retry, bool) {
	rs := a.Spec.SyncPolicy.Retry
	if rs == nil || rs.Limit == 0 {
		return Retry{}, false
	}
	r := Retry{Limit: int(rs.Limit), Duration: defaultRetryDuration, Factor: defaultRetryFactor, MaxDuration: defaultRetryMaxDuration}
	if b := rs.Backoff; b != nil {
		if d, err := parseArgoDuration(b.Duration); err == nil && b.Duration != "" {
			r.Duration = d
		}
		if b.Factor != nil {
			r.Factor = *b.Factor
		}
		if d, err := parseArgoDuration(b.MaxDuration); err == nil && b.MaxDuration != "" {
			r.MaxDuration = d
		}
	}
	return r, true
}

// Backoff is the wait before retry number n (1 for the first retry):
// Duration × Factor^(n-1), at most MaxDuration.
func (r Retry) Backoff(n int) time.Duration {
	d := r.Duration
	for i := 1; i < n; i++ {
		d *= time.Duration(r.Factor)
		if d >= r.MaxDuration || d <= 0 {
			return r.MaxDuration
		}
	}
	return min(d, r.MaxDuration)
}

// parseArgoDuration reads a Go duration or a number of seconds.
func parseArgoDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

// appName is a DNS-1123 label: it must fit a label value (63 characters),
// because the tracking label carries it.
var appName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ParseApplication reads one Application in YAML or JSON and checks it.
// A refusal is an *AppError (wrapping ErrInvalidApp) naming every
// offending field once.
func ParseApplication(data []byte) (*Application, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, &AppError{Name: "(unnamed)", Problems: []string{fmt.Sprintf("not a YAML document: %v", err)}}
	}
	if raw == nil {
		return nil, &AppError{Name: "(unnamed)", Problems: []string{"the document is empty"}}
	}
	var ps problems
	name, _ := nestedString(raw, "metadata", "name")
	if kind, _ := raw["kind"].(string); kind == "ApplicationSet" {
		ps.add("kind", "kind: ApplicationSet: fjord does not support ApplicationSets yet; meanwhile write the Applications it generates, one per document")
		return nil, ps.err(name)
	}
	applicationSchema.checkFields("", raw, &ps)

	var app Application
	// The values that failed their type check were dropped from raw, so
	// this decodes and the other problems are still found.
	js, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(js, &app)
	}
	if err != nil {
		ps.add("", "%v", err)
	} else {
		app.validate(&ps)
	}
	if len(ps.list) > 0 {
		return nil, ps.err(name)
	}
	return &app, nil
}

func nestedString(m map[string]any, keys ...string) (string, bool) {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		v = mm[k]
	}
	s, ok := v.(string)
	return s, ok
}

// problems collects one line per problem, and at most one per field: a
// field (or a parent of it) already reported is not reported again.
type problems struct {
	list  []string
	paths map[string]bool
}

func (p *problems) add(path, format string, args ...any) {
	if p.covered(path) {
		return
	}
	if p.paths == nil {
		p.paths = map[string]bool{}
	}
	if path != "" {
		p.paths[path] = true
	}
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

// cover marks path as explained without a line of its own.
func (p *problems) cover(path string) {
	if p.paths == nil {
		p.paths = map[string]bool{}
	}
	p.paths[path] = true
}

func (p *problems) covered(path string) bool {
	for q := path; q != ""; {
		if p.paths[q] {
			return true
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			break
		}
		q = q[:i]
	}
	return false
}

func (p *problems) err(name string) error {
	if name == "" {
		name = "(unnamed)"
	}
	return &AppError{Name: name, Problems: p.list}
}

// knownSyncOptions are the syncOptions fjord honours, with the values
// each takes.
var knownSyncOptions = map[string][]string{
	"CreateNamespace":          {"true", "false"},
	"PruneLast":                {"true", "false"},
	"ApplyOutOfSyncOnly":       {"true", "false"},
	"ServerSideApply":          {"true", "false"},
	"RespectIgnoreDifferences": {"true", "false"},
	"PrunePropagationPolicy":   {"foreground", "background", "orphan"},
	"FailOnSharedResource":     {"true", "false"},
	"Validate":                 {"true", "false"},
	// For the whole app: every object replaced (kubectl replace, or
	// create when absent) instead of applied; every object of a kind the
	// cluster does not serve yet left out of the dry run.
	"Replace":                     {"true", "false"},
	"SkipDryRunOnMissingResource": {"true", "false"},
}

// syncOptionHints say what to do instead of a syncOption fjord lacks.
var syncOptionHints = map[string]string{
	"Prune":  "Prune is a per-object option: annotate the objects with argocd.argoproj.io/sync-options: Prune=false, or set spec.syncPolicy.automated.prune",
	"Delete": "Delete is a per-object option: annotate the objects with argocd.argoproj.io/sync-options: Delete=false",
	"Force":  "Force is a per-object option used with Replace: annotate the objects with argocd.argoproj.io/sync-options: Force=true,Replace=true",
}

func (a *Application) validate(ps *problems) {
	if a.APIVersion != "argoproj.io/v1alpha1" {
		ps.add("apiVersion", "apiVersion: %q, want argoproj.io/v1alpha1", a.APIVersion)
	}
	if a.Kind != "Application" {
		ps.add("kind", "kind: %q, want Application", a.Kind)
	}
	if !appName.MatchString(a.Metadata.Name) {
		ps.add("metadata.name", "metadata.name: %q must be lower-case letters, digits and '-', at most 63 characters", a.Metadata.Name)
	}
	if w, ok := a.Metadata.Annotations[AnnotationSyncWave]; ok {
		if _, err := strconv.Atoi(strings.TrimSpace(w)); err != nil {
			ps.add("metadata.annotations", "metadata.annotations: %s: %q is not an integer: write a whole number such as \"-1\" or \"2\"", AnnotationSyncWave, w)
		}
	}
	for _, f := range a.Metadata.Finalizers {
		switch f {
		case FinalizerResources, FinalizerResourcesBackground, FinalizerResourcesForeground:
		default:
			ps.add("metadata.finalizers", "metadata.finalizers: %q: fjord does not support it yet (it knows %s and its /background and /foreground forms); meanwhile run that step by hand before `fjord app delete`", f, FinalizerResources)
		}
	}
	if p := a.Spec.Project; p != "" && !appName.MatchString(p) {
		ps.add("spec.project", "spec.project: %q is not a valid project name: lower-case letters, digits and '-'", p)
	}
	a.validateSource(ps)
	a.validateDestination(ps)
	a.validateSyncPolicy(ps)
	for i, d := range a.Spec.IgnoreDifferences {
		at := fmt.Sprintf("spec.ignoreDifferences[%d]", i)
		if d.Kind == "" {
			ps.add(at+".kind", "%s.kind: missing: name the kind of the objects, such as Deployment", at)
		}
		if len(d.JSONPointers)+len(d.JQPathExpressions)+len(d.ManagedFieldsManagers) == 0 {
			ps.add(at, "%s: names no field: give jsonPointers, jqPathExpressions or managedFieldsManagers", at)
		}
		for j, p := range d.JSONPointers {
			if !strings.HasPrefix(p, "/") {
				ps.add(fmt.Sprintf("%s.jsonPointers[%d]", at, j), "%s.jsonPointers[%d]: %q is not a JSON pointer: start it with '/', such as /spec/replicas", at, j, p)
			}
		}
		for j, e := range d.JQPathExpressions {
			if !strings.HasPrefix(strings.TrimSpace(e), ".") {
				ps.add(fmt.Sprintf("%s.jqPathExpressions[%d]", at, j), "%s.jqPathExpressions[%d]: %q is not a jq path: start it with '.', such as .spec.replicas", at, j, e)
			}
		}
	}
	if l := a.Spec.RevisionHistoryLimit; l != nil && *l < 0 {
		ps.add("spec.revisionHistoryLimit", "spec.revisionHistoryLimit: %d: want 0 or more", *l)
	}
	for i, in := range a.Spec.Info {
		if in.Name == "" {
			ps.add(fmt.Sprintf("spec.info[%d].name", i), "spec.info[%d].name: missing: give each entry a name and a value", i)
		}
	}
}

// refName is what a source's ref may be: it is written $ref/path.
var refName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (a *Application) validateSource(ps *problems) {
	if len(a.Spec.Sources) > 0 {
		s := a.Spec.Source
		if s.RepoURL != "" || s.Path != "" || s.Chart != "" {
			ps.add("spec.source", "spec.source: give spec.source or spec.sources, not both (Argo CD ignores spec.source then): move it into spec.sources")
		}
	}
	refs := map[string]bool{}
	rendered := 0
	for i, s := range a.AllSources() {
		if s.Ref == "" {
			continue
		}
		at := a.sourceField(i) + ".ref"
		switch {
		case len(a.Spec.Sources) == 0:
			ps.add(at, "%s: ref names a source of spec.sources for the others' value files; with one source it has no use: drop it, or move the sources into spec.sources", at)
		case !refName.MatchString(s.Ref):
			ps.add(at, "%s: %q: use letters, digits, '-' and '_' only (it is written $%s/path)", at, s.Ref, s.Ref)
		case refs[s.Ref]:
			ps.add(at, "%s: %q is the ref of an earlier source too: give each source its own ref", at, s.Ref)
		}
		refs[s.Ref] = true
	}
	for i, s := range a.AllSources() {
		if !s.refOnly() {
			rendered++
		}
		a.validateOneSource(ps, a.sourceField(i), s, refs)
	}
	if len(a.Spec.Sources) > 0 && rendered == 0 {
		ps.add("spec.sources", "spec.sources: every source has ref and no path or chart, so nothing is rendered: give the source to deploy a path or a chart")
	}
}

func (a *Application) validateOneSource(ps *problems, at string, s Source, refs map[string]bool) {
	if s.RepoURL == "" {
		ps.add(at+".repoURL", "%s.repoURL: missing: name a repo of this fjord (see `fjord repo list`), or a Helm repository with chart", at)
	}
	if path := s.Path; strings.HasPrefix(path, "/") || hasDotDot(path) {
		ps.add(at+".path", "%s.path: %q must be relative to the repo root, without '..'", at, path)
	}
	if s.Chart != "" {
		switch {
		case s.Path != "":
			ps.add(at+".chart", "%s: give chart (a chart of a Helm repository) or path (a directory of a git repo), not both", at)
		case s.Ref != "":
			ps.add(at+".ref", "%s.ref: a chart source cannot lend files: put ref on a git source", at)
		case strings.Contains(s.RepoURL, "://") && !strings.HasPrefix(s.RepoURL, "https://") && !strings.HasPrefix(s.RepoURL, "http://") && !strings.HasPrefix(s.RepoURL, "oci://"),
			!strings.Contains(s.RepoURL, "://") && !strings.ContainsAny(s.RepoURL, ".:"):
			ps.add(at+".repoURL", "%s.repoURL: %q: a chart comes from a Helm repository: write https://HOST/PATH, or oci://HOST/PATH (or HOST/PATH) for an OCI registry", at, s.RepoURL)
		}
		if strings.Contains(s.Chart, "/") && strings.Contains(s.RepoURL, "://") && !strings.HasPrefix(s.RepoURL, "oci://") {
			ps.add(at+".chart", "%s.chart: %q: name the chart alone (no repository prefix); the repository is repoURL", at, s.Chart)
		}
	}
	if d := s.Directory; d != nil {
		for _, g := range []struct{ name, pat string }{{"include", d.Include}, {"exclude", d.Exclude}} {
			if _, err := compileGlob(g.pat); err != nil {
				ps.add(at+".directory."+g.name, "%s.directory.%s: %q is not a valid glob: %v", at, g.name, g.pat, err)
			}
		}
	}
	if h := s.Helm; h != nil {
		if h.PassCredentials {
			ps.add(at+".helm.passCredentials", "%s.helm.passCredentials: true: fjord does not pass a Helm repository's credentials to other hosts; set it to false (charts are fetched from their own repository with that repository's credentials from `fjord helmrepo add`)", at)
		}
		if v := h.Version; v != "" && v != "v3" && v != "3" {
			ps.add(at+".helm.version", "%s.helm.version: %q: fjord renders with Helm v3: drop it or write v3", at, v)
		}
		for j, vf := range h.ValueFiles {
			if ref, _, ok := strings.Cut(strings.TrimPrefix(vf, "$"), "/"); strings.HasPrefix(vf, "$") && ok && !refs[ref] {
				ps.add(fmt.Sprintf("%s.helm.valueFiles[%d]", at, j), "%s.helm.valueFiles[%d]: %q names ref %q, which no source of spec.sources has: add a source with ref: %s", at, j, vf, ref, ref)
			} else if strings.Contains(vf, "://") {
				ps.add(fmt.Sprintf("%s.helm.valueFiles[%d]", at, j), "%s.helm.valueFiles[%d]: %q: fjord does not fetch value files from URLs yet; meanwhile commit the file to a repo and add it as a ref source ($ref/path)", at, j, vf)
			}
		}
		for j, p := range h.Parameters {
			if p.Name == "" {
				ps.add(fmt.Sprintf("%s.helm.parameters[%d].name", at, j), "%s.helm.parameters[%d].name: missing: name the value to set, such as image.tag", at, j)
			}
		}
		for j, p := range h.FileParameters {
			if p.Name == "" || p.Path == "" {
				ps.add(fmt.Sprintf("%s.helm.fileParameters[%d]", at, j), "%s.helm.fileParameters[%d]: give both name (the value to set) and path (the file)", at, j)
			}
		}
		if h.ReleaseName != "" && !appName.MatchString(h.ReleaseName) {
			ps.add(at+".helm.releaseName", "%s.helm.releaseName: %q: Helm wants lower-case letters, digits and '-', at most 53 characters", at, h.ReleaseName)
		}
	}
	if k := s.Kustomize; k != nil {
		for j, img := range k.Images {
			if _, err := parseKustomizeImage(img); err != nil {
				ps.add(fmt.Sprintf("%s.kustomize.images[%d]", at, j), "%s.kustomize.images[%d]: %v", at, j, err)
			}
		}
		for j, r := range k.Replicas {
			if r.Name == "" {
				ps.add(fmt.Sprintf("%s.kustomize.replicas[%d].name", at, j), "%s.kustomize.replicas[%d].name: missing: name the Deployment or StatefulSet", at, j)
			}
			if _, err := r.count(); err != nil {
				ps.add(fmt.Sprintf("%s.kustomize.replicas[%d].count", at, j), "%s.kustomize.replicas[%d].%v", at, j, err)
			}
		}
		for j, p := range k.Patches {
			if p["patch"] == nil && p["path"] == nil {
				ps.add(fmt.Sprintf("%s.kustomize.patches[%d]", at, j), "%s.kustomize.patches[%d]: give patch (the patch text) or path (a file next to the kustomization)", at, j)
			}
		}
		for j, c := range k.Components {
			if strings.HasPrefix(c, "/") || strings.Contains(c, "://") {
				ps.add(fmt.Sprintf("%s.kustomize.components[%d]", at, j), "%s.kustomize.components[%d]: %q: give a path relative to source.path, inside the repo", at, j, c)
			}
		}
	}
}

func (a *Application) validateDestination(ps *problems) {
	d := a.Spec.Destination
	switch {
	case d.Name != "" && d.Server != "":
		ps.add("spec.destination", "spec.destination: give server or name, not both (for this cluster: server: %s)", InClusterServer)
	case d.Name == InClusterName:
	case d.Name != "":
		// Another cluster: `fjord cluster add` made it; apply checks
		// that it exists.
		if err := storage.ValidateClusterName(d.Name); err != nil {
			ps.add("spec.destination.name", "spec.destination.name: %q is not a cluster name: lower-case letters, digits, '-' and '.' (see `fjord cluster list`)", d.Name)
		}
	case d.Server == "":
		ps.add("spec.destination.server", "spec.destination.server: missing: use %s for fjord's own cluster (or destination.name: %s), or a cluster's URL from `fjord cluster list`", InClusterServer, InClusterName)
	default:
		if u, err := url.Parse(d.Server); err != nil || u.Scheme != "https" || u.Host == "" {
			ps.add("spec.destination.server", "spec.destination.server: %q is not an API server URL: want https://HOST[:PORT], such as %s", d.Server, InClusterServer)
		}
	}
	if ns := d.Namespace; ns != "" && !appName.MatchString(ns) {
		ps.add("spec.destination.namespace", "spec.destination.namespace: %q is not a valid namespace name", ns)
	}
}

func (a *Application) validateSyncPolicy(ps *problems) {
	sp := a.Spec.SyncPolicy
	for i, o := range sp.SyncOptions {
		at := fmt.Sprintf("spec.syncPolicy.syncOptions[%d]", i)
		k, v, hasValue := strings.Cut(o, "=")
		values, known := knownSyncOptions[k]
		switch {
		case known && hasValue && contains(values, v):
		case known:
			ps.add(at, "%s: %q: want %s=%s", at, o, k, strings.Join(values, "|"))
		case syncOptionHints[k] != "":
			ps.add(at, "%s: %q: %s", at, o, syncOptionHints[k])
		default:
			ps.add(at, "%s: %q is not a sync option fjord knows (it knows %s): check the spelling", at, o, strings.Join(sortedNames(knownSyncOptions), ", "))
		}
	}
	if a.CreateNamespace() && a.Spec.Destination.Namespace == "" {
		ps.add("spec.syncPolicy.syncOptions", "spec.syncPolicy.syncOptions: CreateNamespace=true needs spec.destination.namespace")
	}
	if m := sp.ManagedNamespaceMetadata; m != nil && !a.CreateNamespace() && (len(m.Labels) > 0 || len(m.Annotations) > 0) {
		ps.add("spec.syncPolicy.managedNamespaceMetadata", "spec.syncPolicy.managedNamespaceMetadata: applies only to the namespace CreateNamespace=true creates: add CreateNamespace=true to syncOptions, or put the labels on a Namespace object in git")
	}
	if r := sp.Retry; r != nil && r.Backoff != nil {
		b := r.Backoff
		for _, d := range []struct{ name, v string }{{"duration", b.Duration}, {"maxDuration", b.MaxDuration}} {
			if d.v == "" {
				continue
			}
			if t, err := parseArgoDuration(d.v); err != nil || t <= 0 {
				ps.add("spec.syncPolicy.retry.backoff."+d.name, "spec.syncPolicy.retry.backoff.%s: %q is not a duration: write it as 5s, 2m or 1h", d.name, d.v)
			}
		}
		if b.Factor != nil && *b.Factor < 1 {
			ps.add("spec.syncPolicy.retry.backoff.factor", "spec.syncPolicy.retry.backoff.factor: %d: want 1 or more", *b.Factor)
		}
	}
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

func hasDotDot(path string) bool {
	for _, seg := range strings.Split(path, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// cleanRepoPath is p relative to the repo root: no leading or trailing
// '/', "" for the root.
func cleanRepoPath(p string) string {
	return strings.Trim(path.Clean("/"+p), "/")
}

// storageMeta is what storage keeps of the app beside its manifest.
func (a *Application) storageMeta(parent string) storage.AppMeta {
	m := storage.AppMeta{Labels: a.Metadata.Labels, Annotations: a.Metadata.Annotations, Project: a.Project(), Parent: parent}
	if l := a.Spec.RevisionHistoryLimit; l != nil {
		// 0 would keep nothing to show; keep at least the last sync.
		m.HistoryLimit = max(int(*l), 1)
	}
	return m
}

// managedNamespace is the Namespace CreateNamespace=true applies: its
// name and the labels and annotations of managedNamespaceMetadata.
func managedNamespace(ns string, meta *ManagedNamespaceMetadata) *unstructured.Unstructured {
	md := map[string]any{"name": ns}
	if meta != nil {
		if len(meta.Labels) > 0 {
			md["labels"] = stringMapAny(meta.Labels)
		}
		if len(meta.Annotations) > 0 {
			md["annotations"] = stringMapAny(meta.Annotations)
		}
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": md}}
}

func stringMapAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
