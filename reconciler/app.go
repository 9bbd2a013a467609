package reconciler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// InClusterServer is the only destination.server fjord supports: the
// cluster of its own kubeconfig, as in Argo CD.
const InClusterServer = "https://kubernetes.default.svc"

// ErrInvalidApp marks an Application document fjord refuses; the message
// names the field and what to do.
var ErrInvalidApp = errors.New("invalid Application")

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
}

// ApplicationSpec is spec.
type ApplicationSpec struct {
	// Project must be "default" or empty.
	Project     string      `json:"project,omitempty"`
	Source      Source      `json:"source"`
	Destination Destination `json:"destination"`
	SyncPolicy  SyncPolicy  `json:"syncPolicy"`
}

// Source is spec.source.
type Source struct {
	// RepoURL names a repo of this fjord: its name, its SSH URL, or the
	// upstream URL of a pull mirror.
	RepoURL string `json:"repoURL"`
	// TargetRevision is HEAD (default), a branch, a tag or a full commit.
	TargetRevision string `json:"targetRevision,omitempty"`
	// Path is the directory in the repo to render; "" or "." is the root.
	Path string `json:"path,omitempty"`
}

// Destination is spec.destination.
type Destination struct {
	Server string `json:"server"`
	// Namespace is given to namespaced objects that have none.
	Namespace string `json:"namespace,omitempty"`
}

// SyncPolicy is spec.syncPolicy.
type SyncPolicy struct {
	// Automated is nil for manual sync: fjord renders and reports but
	// applies only on `fjord app sync`.
	Automated   *Automated `json:"automated,omitempty"`
	SyncOptions []string   `json:"syncOptions,omitempty"`
}

// Automated is spec.syncPolicy.automated.
type Automated struct {
	Prune      bool `json:"prune,omitempty"`
	SelfHeal   bool `json:"selfHeal,omitempty"`
	AllowEmpty bool `json:"allowEmpty,omitempty"`
}

// Auto reports whether commits are applied without `fjord app sync`.
func (a *Application) Auto() bool { return a.Spec.SyncPolicy.Automated != nil }

// Prune reports whether automated syncs delete objects git dropped.
func (a *Application) Prune() bool { return a.Auto() && a.Spec.SyncPolicy.Automated.Prune }

// SelfHeal reports whether drift is reverted (rather than reported).
func (a *Application) SelfHeal() bool { return a.Auto() && a.Spec.SyncPolicy.Automated.SelfHeal }

// AllowEmpty reports whether an empty render may prune everything.
func (a *Application) AllowEmpty() bool { return a.Auto() && a.Spec.SyncPolicy.Automated.AllowEmpty }

// CreateNamespace reports syncOption CreateNamespace=true.
func (a *Application) CreateNamespace() bool { return a.syncOption("CreateNamespace") }

// PruneLast reports syncOption PruneLast=true. fjord always prunes after
// applying, so this only documents intent; it is accepted, not ignored.
func (a *Application) PruneLast() bool { return a.syncOption("PruneLast") }

func (a *Application) syncOption(key string) bool {
	for _, o := range a.Spec.SyncPolicy.SyncOptions {
		if o == key+"=true" {
			return true
		}
	}
	return false
}

// Revision is the target revision, HEAD when unset.
func (a *Application) Revision() string {
	if a.Spec.Source.TargetRevision == "" {
		return "HEAD"
	}
	return a.Spec.Source.TargetRevision
}

// allowed is the tree of fields fjord accepts; a nil value is a leaf.
var allowed = field{
	"apiVersion": nil,
	"kind":       nil,
	"metadata": field{
		"name":      nil,
		"namespace": nil,
	},
	"spec": field{
		"project": nil,
		"source": field{
			"repoURL":        nil,
			"targetRevision": nil,
			"path":           nil,
		},
		"destination": field{
			"server":    nil,
			"namespace": nil,
		},
		"syncPolicy": field{
			"automated": field{
				"prune":      nil,
				"selfHeal":   nil,
				"allowEmpty": nil,
			},
			"syncOptions": nil,
		},
	},
}

type field map[string]field

// hints tell an operator what to do instead of a field fjord lacks.
var hints = map[string]string{
	"spec.source.helm":                         "render the chart to YAML in git, or use kustomize's helmCharts in a repo fjord does not sync",
	"spec.source.kustomize":                    "put these settings in the kustomization.yaml in git",
	"spec.source.directory":                    "fjord reads the YAML files in source.path (not recursively) when it has no kustomization.yaml",
	"spec.source.plugin":                       "config management plugins are not run by fjord",
	"spec.sources":                             "fjord syncs one source per Application: split it into several Applications",
	"spec.destination.name":                    "use destination.server: " + InClusterServer,
	"spec.ignoreDifferences":                   "drop the field; fjord only compares the fields it applies",
	"spec.syncPolicy.retry":                    "fjord retries on the next push and on every resync (--resync-interval)",
	"metadata.finalizers":                      "use `fjord app delete NAME --cascade` to delete the app's objects",
	"metadata.labels":                          "drop the field; fjord does not use Application labels",
	"metadata.annotations":                     "drop the field; fjord does not use Application annotations",
	"spec.revisionHistoryLimit":                "fjord keeps the last 100 syncs (`fjord app history`)",
	"spec.info":                                "drop the field",
	"spec.syncPolicy.managedNamespaceMetadata": "label or annotate the namespace with a Namespace object in git",
}

// appName is a DNS-1123 label: it must fit a label value (63 characters),
// because the tracking label carries it.
var appName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ParseApplication reads one Application in YAML or JSON and checks it.
// Errors wrap ErrInvalidApp and name each offending field.
func ParseApplication(data []byte) (*Application, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: not a YAML document: %v", ErrInvalidApp, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: the document is empty", ErrInvalidApp)
	}
	var problems []string
	unknownFields("", raw, allowed, &problems)

	js, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidApp, err)
	}
	var app Application
	dec := json.NewDecoder(bytes.NewReader(js))
	if err := dec.Decode(&app); err != nil {
		// Types are wrong (a string where a bool belongs); say which.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			problems = append(problems, fmt.Sprintf("%s: want a %s, got a %s", te.Field, te.Type, te.Value))
		} else {
			problems = append(problems, err.Error())
		}
	} else {
		problems = append(problems, app.validate()...)
	}
	if len(problems) > 0 {
		name := app.Metadata.Name
		if name == "" {
			name = "(unnamed)"
		}
		return nil, fmt.Errorf("%w %s:\n  - %s", ErrInvalidApp, name, strings.Join(problems, "\n  - "))
	}
	return &app, nil
}

// unknownFields appends one problem per field not in the allowed tree.
func unknownFields(prefix string, v map[string]any, allow field, problems *[]string) {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		sub, ok := allow[k]
		if !ok {
			if path == "status" || path == "operation" {
				// Argo CD writes these; they are not configuration.
				*problems = append(*problems, fmt.Sprintf("%s: fjord does not accept Argo CD's %s field: delete it from the file", path, k))
				continue
			}
			msg := fmt.Sprintf("%s: not supported by fjord", path)
			if h, ok := hints[path]; ok {
				msg += " (" + h + ")"
			} else {
				msg += ": remove it"
			}
			*problems = append(*problems, msg)
			continue
		}
		if m, isMap := v[k].(map[string]any); isMap && sub != nil {
			unknownFields(path, m, sub, problems)
		}
	}
}

func (a *Application) validate() []string {
	var p []string
	if a.APIVersion != "argoproj.io/v1alpha1" {
		p = append(p, fmt.Sprintf("apiVersion: %q, want argoproj.io/v1alpha1", a.APIVersion))
	}
	if a.Kind != "Application" {
		p = append(p, fmt.Sprintf("kind: %q, want Application", a.Kind))
	}
	if !appName.MatchString(a.Metadata.Name) {
		p = append(p, fmt.Sprintf("metadata.name: %q must be lower-case letters, digits and '-', at most 63 characters", a.Metadata.Name))
	}
	if a.Spec.Project != "" && a.Spec.Project != "default" {
		p = append(p, fmt.Sprintf("spec.project: %q: fjord has no projects; use \"default\" or leave it out", a.Spec.Project))
	}
	if a.Spec.Source.RepoURL == "" {
		p = append(p, "spec.source.repoURL: missing: name a repo of this fjord (see `fjord repo list`)")
	}
	if path := a.Spec.Source.Path; strings.HasPrefix(path, "/") || hasDotDot(path) {
		p = append(p, fmt.Sprintf("spec.source.path: %q must be relative to the repo root, without '..'", path))
	}
	switch a.Spec.Destination.Server {
	case InClusterServer:
	case "":
		p = append(p, "spec.destination.server: missing: use "+InClusterServer)
	default:
		p = append(p, fmt.Sprintf("spec.destination.server: %q: fjord deploys only to the cluster of its own kubeconfig (%s) for now", a.Spec.Destination.Server, InClusterServer))
	}
	if ns := a.Spec.Destination.Namespace; ns != "" && !appName.MatchString(ns) {
		p = append(p, fmt.Sprintf("spec.destination.namespace: %q is not a valid namespace name", ns))
	}
	for _, o := range a.Spec.SyncPolicy.SyncOptions {
		switch o {
		case "CreateNamespace=true", "CreateNamespace=false", "PruneLast=true", "PruneLast=false":
		default:
			p = append(p, fmt.Sprintf("spec.syncPolicy.syncOptions: %q not supported by fjord (supported: CreateNamespace=true, PruneLast=true)", o))
		}
	}
	if a.CreateNamespace() && a.Spec.Destination.Namespace == "" {
		p = append(p, "spec.syncPolicy.syncOptions: CreateNamespace=true needs spec.destination.namespace")
	}
	return p
}

func hasDotDot(path string) bool {
	for _, seg := range strings.Split(path, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}
