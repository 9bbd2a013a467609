package reconciler

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/fjordhq/fjord/storage"
)

// DefaultProject is the project every app without one belongs to. It
// allows everything unless the user applies an AppProject of that name.
const DefaultProject = "default"

// AppProject is the subset of Argo CD's AppProject that fjord enforces.
type AppProject struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   AppMetadata    `json:"metadata"`
	Spec       AppProjectSpec `json:"spec"`
}

// AppProjectSpec is an AppProject's spec. Lists of globs follow Argo CD:
// '*' matches anything, a leading '!' denies what it matches.
type AppProjectSpec struct {
	Description string `json:"description,omitempty"`
	// SourceRepos are the repoURLs apps may use; empty allows none.
	SourceRepos []string `json:"sourceRepos,omitempty"`
	// Destinations are the server or name and namespace apps may deploy
	// to; empty allows none.
	Destinations []ProjectDestination `json:"destinations,omitempty"`
	// ClusterResourceWhitelist: the cluster-scoped kinds allowed; empty
	// allows none, as in Argo CD.
	ClusterResourceWhitelist []GroupKindGlob `json:"clusterResourceWhitelist,omitempty"`
	ClusterResourceBlacklist []GroupKindGlob `json:"clusterResourceBlacklist,omitempty"`
	// NamespaceResourceWhitelist: the namespaced kinds allowed; absent
	// allows all.
	NamespaceResourceWhitelist []GroupKindGlob `json:"namespaceResourceWhitelist,omitempty"`
	NamespaceResourceBlacklist []GroupKindGlob `json:"namespaceResourceBlacklist,omitempty"`
	// SignatureKeys are the keys the commits of the project's apps must
	// be signed by; empty applies unsigned commits. See SignatureKey.
	SignatureKeys []SignatureKey `json:"signatureKeys,omitempty"`
}

// SignatureKey is one entry of spec.signatureKeys, in Argo CD's format.
// KeyID names a key added with `fjord signkey add`: an OpenPGP key ID (16
// hex digits) or fingerprint, as Argo CD takes it; an SSH key's SHA256:
// fingerprint, as `ssh-keygen -lf` prints it; or, for either kind, the
// key's fjord name.
type SignatureKey struct {
	KeyID string `json:"keyID"`
}

// keyIDs returns the keyIDs of spec.signatureKeys.
func (p *AppProject) keyIDs() []string {
	var ids []string
	for _, k := range p.Spec.SignatureKeys {
		ids = append(ids, strings.TrimSpace(k.KeyID))
	}
	return ids
}

// ProjectDestination is one entry of spec.destinations.
type ProjectDestination struct {
	Server    string `json:"server,omitempty"`
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// GroupKindGlob is a group and kind, each a glob ("" is the core group).
type GroupKindGlob struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
}

func (g GroupKindGlob) String() string {
	grp := g.Group
	if grp == "" {
		grp = `""`
	}
	return grp + "/" + g.Kind
}

func (g GroupKindGlob) matches(group, kind string) bool {
	return globMatch(g.Group, group) && globMatch(g.Kind, kind)
}

const (
	refuseRoles       = "fjord does not support project roles yet: give people access with `fjord grant`"
	refuseSyncWindows = "fjord does not support sync windows yet; meanwhile set the apps' syncPolicy to manual (automated.enabled: false) and sync them with `fjord app sync` inside the window"
)

var projectSchema = objectOf(map[string]*fieldSpec{
	"apiVersion": str(),
	"kind":       str(),
	"metadata":   objectMetaSchema(),
	"spec": objectOf(map[string]*fieldSpec{
		"description": str(),
		"sourceRepos": strs(),
		"destinations": objectsOf(map[string]*fieldSpec{
			"server":    str(),
			"name":      str(),
			"namespace": str(),
		}),
		"clusterResourceWhitelist":   objectsOf(groupKindFields),
		"clusterResourceBlacklist":   objectsOf(groupKindFields),
		"namespaceResourceWhitelist": objectsOf(groupKindFields),
		"namespaceResourceBlacklist": objectsOf(groupKindFields),
		"roles":                      refused(refuseRoles),
		"syncWindows":                refused(refuseSyncWindows),
		"signatureKeys":              objectsOf(map[string]*fieldSpec{"keyID": str()}),
		"sourceNamespaces":           refused("fjord keeps every app in one flat namespace of names: delete the field"),
		// Argo CD's switch for orphan warnings: fjord reports the
		// orphans of every app in `fjord app get` whatever it says, and
		// never deletes them on this field's account, so it is accepted
		// as written.
		"orphanedResources": objectOf(map[string]*fieldSpec{
			"warn":   boolean(),
			"ignore": objectsOf(map[string]*fieldSpec{"group": str(), "kind": str(), "name": str()}),
		}),
		"permitOnlyProjectScopedClusters": refused("fjord has no project-scoped clusters: clusters are added with `fjord cluster add` for every project; delete the field"),
	}),
})

var groupKindFields = map[string]*fieldSpec{"group": str(), "kind": str()}

// ParseProject reads one AppProject in YAML or JSON and checks it. A
// refusal is an *AppError naming every offending field once.
func ParseProject(data []byte) (*AppProject, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, &AppError{Name: "(unnamed)", Problems: []string{fmt.Sprintf("not a YAML document: %v", err)}}
	}
	if raw == nil {
		return nil, &AppError{Name: "(unnamed)", Problems: []string{"the document is empty"}}
	}
	var ps problems
	name, _ := nestedString(raw, "metadata", "name")
	projectSchema.checkFields("", raw, &ps)
	var p AppProject
	js, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(js, &p)
	}
	if err != nil {
		ps.add("", "%v", err)
	} else {
		if p.APIVersion != "argoproj.io/v1alpha1" {
			ps.add("apiVersion", "apiVersion: %q, want argoproj.io/v1alpha1", p.APIVersion)
		}
		if p.Kind != "AppProject" {
			ps.add("kind", "kind: %q, want AppProject", p.Kind)
		}
		if !appName.MatchString(p.Metadata.Name) {
			ps.add("metadata.name", "metadata.name: %q must be lower-case letters, digits and '-', at most 63 characters", p.Metadata.Name)
		}
		for i, k := range p.Spec.SignatureKeys {
			if strings.TrimSpace(k.KeyID) == "" {
				ps.add("spec.signatureKeys", "spec.signatureKeys[%d].keyID: missing: name a key of `fjord signkey list` (its name, OpenPGP key ID or SSH SHA256: fingerprint)", i)
			}
		}
		for i, gk := range p.allGroupKinds() {
			if gk.Kind == "" {
				ps.add(fmt.Sprintf("spec.%s", gk.list), "spec.%s[%d].kind: missing: name a kind, or '*' for all", gk.list, i)
			}
		}
	}
	if len(ps.list) > 0 {
		return nil, ps.err(name)
	}
	return &p, nil
}

type listedGroupKind struct {
	GroupKindGlob
	list string
}

func (p *AppProject) allGroupKinds() []listedGroupKind {
	var out []listedGroupKind
	for list, l := range map[string][]GroupKindGlob{
		"clusterResourceWhitelist": p.Spec.ClusterResourceWhitelist, "clusterResourceBlacklist": p.Spec.ClusterResourceBlacklist,
		"namespaceResourceWhitelist": p.Spec.NamespaceResourceWhitelist, "namespaceResourceBlacklist": p.Spec.NamespaceResourceBlacklist,
	} {
		for _, g := range l {
			out = append(out, listedGroupKind{g, list})
		}
	}
	return out
}

// ErrProjectDenied marks an app its project does not allow; the message
// names the object or field and the rule.
var ErrProjectDenied = errors.New("not allowed by the project")

// allowsSource checks the app's repoURL against sourceRepos.
func (p *AppProject) allowsSource(repoURL string) error {
	if ok, rule := globList(p.Spec.SourceRepos, repoURL, sameRemote); !ok {
		return fmt.Errorf("%w %s: spec.source.repoURL %q %s (sourceRepos %q): add it to the project's sourceRepos", ErrProjectDenied, p.Metadata.Name, repoURL, rule, p.Spec.SourceRepos)
	}
	return nil
}

// allowsDestination checks a destination (the app's, or a namespace an
// object of its render lives in) against destinations.
func (p *AppProject) allowsDestination(d Destination, namespace string) error {
	server, name := d.Server, d.Name
	if server == "" && name == InClusterName {
		server = InClusterServer
	}
	if name == "" && server == InClusterServer {
		name = InClusterName
	}
	for _, pd := range p.Spec.Destinations {
		clusterOK := (pd.Server != "" && globMatch(pd.Server, server)) || (pd.Name != "" && globMatch(pd.Name, name))
		nsOK := pd.Namespace == "" || globMatch(pd.Namespace, namespace)
		if clusterOK && nsOK {
			return nil
		}
	}
	return fmt.Errorf("%w %s: destination %s namespace %q is not in the project's destinations %s: add it there", ErrProjectDenied, p.Metadata.Name, orDefault(name, server), namespace, p.destinationList())
}

func (p *AppProject) destinationList() string {
	var parts []string
	for _, d := range p.Spec.Destinations {
		parts = append(parts, fmt.Sprintf("{%s %s}", orDefault(d.Server, d.Name), orDefault(d.Namespace, "*")))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

// allowsKind checks one object's kind against the resource lists; cluster
// tells a cluster-scoped object from a namespaced one.
func (p *AppProject) allowsKind(group, kind string, cluster bool) (bool, string) {
	white, black := p.Spec.NamespaceResourceWhitelist, p.Spec.NamespaceResourceBlacklist
	scope := "namespaceResource"
	if cluster {
		white, black = p.Spec.ClusterResourceWhitelist, p.Spec.ClusterResourceBlacklist
		scope = "clusterResource"
	}
	for _, b := range black {
		if b.matches(group, kind) {
			return false, fmt.Sprintf("%sBlacklist entry %s", scope, b)
		}
	}
	if white == nil && !cluster {
		return true, ""
	}
	for _, w := range white {
		if w.matches(group, kind) {
			return true, ""
		}
	}
	if len(white) == 0 {
		return false, fmt.Sprintf("%sWhitelist is empty, which allows no %s kind", scope, map[bool]string{true: "cluster-scoped", false: "namespaced"}[cluster])
	}
	return false, fmt.Sprintf("%sWhitelist %v has no entry for it", scope, white)
}

// CheckProject is the project's verdict on an app and its render (the
// objects prepared for apply: a cluster-scoped object has no namespace).
// It is pure: nil, or an error wrapping ErrProjectDenied that names every
// object and field refused and the rule that refuses it. A nil project
// allows everything (the implicit default project).
func CheckProject(p *AppProject, app *Application, objs []*unstructured.Unstructured) error {
	if p == nil {
		return nil
	}
	var problems []string
	for _, src := range app.AllSources() {
		if err := p.allowsSource(src.RepoURL); err != nil {
			problems = append(problems, strings.TrimPrefix(err.Error(), ErrProjectDenied.Error()+" "+p.Metadata.Name+": "))
		}
	}
	checkDest := func(what, ns string) {
		if err := p.allowsDestination(app.Spec.Destination, ns); err != nil {
			problems = append(problems, what+": "+strings.TrimPrefix(err.Error(), ErrProjectDenied.Error()+" "+p.Metadata.Name+": "))
		}
	}
	checkDest("spec.destination", app.Spec.Destination.Namespace)
	seenNS := map[string]bool{app.Spec.Destination.Namespace: true}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		ns := u.GetNamespace()
		if ok, rule := p.allowsKind(gvk.Group, gvk.Kind, ns == ""); !ok {
			problems = append(problems, fmt.Sprintf("%s: kind %s is refused by %s", RefOf(u), GroupKindGlob{gvk.Group, gvk.Kind}, rule))
		}
		if ns != "" && !seenNS[ns] {
			seenNS[ns] = true
			checkDest(RefOf(u).String(), ns)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w %q: %s; nothing was applied", ErrProjectDenied, p.Metadata.Name, strings.Join(problems, "; "))
	}
	return nil
}

// globList matches s against a list of globs with Argo CD's '!' denials:
// allowed when some entry matches and no denial does. rule says why not.
func globList(globs []string, s string, equal func(a, b string) bool) (bool, string) {
	allowed := false
	for _, g := range globs {
		if deny, ok := strings.CutPrefix(g, "!"); ok {
			if globMatch(deny, s) || equal(deny, s) {
				return false, fmt.Sprintf("is denied by %q", g)
			}
			continue
		}
		if globMatch(g, s) || equal(g, s) {
			allowed = true
		}
	}
	if !allowed {
		return false, "matches no entry"
	}
	return true, ""
}

// globMatch matches s against an Argo CD glob ('*', '?', [..], {a,b}).
func globMatch(pattern, s string) bool {
	if pattern == "*" || pattern == s {
		return true
	}
	re, err := compileGlob(pattern)
	return err == nil && re.MatchString(s)
}

// project returns the AppProject an app names: the stored one, nil for
// the implicit default project, or an error when it does not exist.
func (r *Reconciler) project(name string) (*AppProject, error) {
	p, err := r.store.Project(name)
	if errors.Is(err, storage.ErrNotFound) {
		if name == DefaultProject {
			return nil, nil
		}
		return nil, fmt.Errorf("project %q does not exist: apply its AppProject first (`fjord project apply -f FILE`), or use project default", name)
	}
	if err != nil {
		return nil, err
	}
	return ParseProject([]byte(p.Manifest))
}

// admit checks what `fjord app apply` needs beyond the document: its
// project exists and allows its repo and destination, and its repo is
// one of this fjord's.
func (r *Reconciler) admit(app *Application) error {
	p, err := r.project(app.Project())
	if err != nil {
		return &AppError{Name: app.Metadata.Name, Problems: []string{"spec.project: " + err.Error()}}
	}
	if p != nil {
		var problems []string
		for _, src := range app.AllSources() {
			if err := p.allowsSource(src.RepoURL); err != nil {
				problems = append(problems, err.Error())
			}
		}
		if err := p.allowsDestination(r.resolvedDestination(app.Spec.Destination), app.Spec.Destination.Namespace); err != nil {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			return &AppError{Name: app.Metadata.Name, Problems: problems}
		}
	}
	var problems []string
	for i, src := range app.AllSources() {
		if src.IsChart() {
			continue // Helm repositories are the chart source's to check
		}
		if _, err := r.resolveRepo(src.RepoURL); err != nil {
			problems = append(problems, app.sourceField(i)+".repoURL: "+err.Error())
		}
	}
	if len(problems) > 0 {
		return &AppError{Name: app.Metadata.Name, Problems: problems}
	}
	if _, err := r.destinationCluster(app.Spec.Destination); err != nil {
		return &AppError{Name: app.Metadata.Name, Problems: []string{err.Error()}}
	}
	return nil
}

// checkPlan applies the app's project to what a sync would apply: every
// resource and hook of the plan. It is the plan step's project gate.
func (r *Reconciler) checkPlan(p *plan) error {
	proj, err := r.project(p.app.Project())
	if err != nil || proj == nil {
		return err
	}
	objs := append([]*unstructured.Unstructured{}, p.objs...)
	for _, s := range append(append([]step{}, p.steps...), p.syncFail...) {
		objs = append(objs, s.hooks...)
	}
	// A project's destinations name a cluster by server or by name, and
	// either matches, as in Argo CD: the app's gets both.
	app := *p.app
	app.Spec.Destination = r.resolvedDestination(app.Spec.Destination)
	return CheckProject(proj, &app, objs)
}

// ApplyProject stores an AppProject (YAML or JSON). A document fjord
// refuses is an error wrapping ErrInvalidApp and changes nothing.
func (r *Reconciler) ApplyProject(manifest []byte) (storage.Project, error) {
	return applyProject(r.store, manifest, "")
}

func applyProject(store *storage.Store, manifest []byte, parent string) (storage.Project, error) {
	p, err := ParseProject(manifest)
	if err != nil {
		return storage.Project{}, err
	}
	sp, err := store.PutProject(p.Metadata.Name, string(manifest), parent, p.keyIDs())
	if errors.Is(err, storage.ErrSigningKeyMissing) {
		return storage.Project{}, &AppError{Name: p.Metadata.Name, Problems: []string{err.Error()}}
	}
	return sp, err
}
