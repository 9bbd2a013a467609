package reconciler

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
)

// valueType is the JSON type a fieldSpec node wants.
type valueType int

const (
	tObject valueType = iota
	tString
	tBool
	tInt
	tStrings   // a list of strings
	tStringMap // an object of string values (labels, annotations)
	tObjects   // a list of objects, each checked against fields
	tAny       // anything (Argo CD's own output, such as jsonnet: {})
	tObjectAny // an object of anything (helm valuesObject)
)

// fieldSpec is the tree of fields fjord accepts, with their types. A field
// that is absent is refused by name; hint says what to do instead.
type fieldSpec struct {
	typ    valueType
	fields map[string]*fieldSpec
	// refuse, when set, refuses the field by name with this message
	// (a field fjord knows but does not support yet).
	refuse string
	// emptyOK accepts a refused field whose value is empty ({} or []),
	// as Argo CD's own exports write them (sources: [], jsonnet: {}).
	emptyOK bool
}

func leaf(t valueType) *fieldSpec                  { return &fieldSpec{typ: t} }
func objectOf(f map[string]*fieldSpec) *fieldSpec  { return &fieldSpec{typ: tObject, fields: f} }
func objectsOf(f map[string]*fieldSpec) *fieldSpec { return &fieldSpec{typ: tObjects, fields: f} }
func refused(msg string) *fieldSpec                { return &fieldSpec{typ: tAny, refuse: msg} }
func refusedUnlessEmpty(msg string) *fieldSpec {
	return &fieldSpec{typ: tAny, refuse: msg, emptyOK: true}
}
func strMap() *fieldSpec  { return leaf(tStringMap) }
func str() *fieldSpec     { return leaf(tString) }
func boolean() *fieldSpec { return leaf(tBool) }
func integer() *fieldSpec { return leaf(tInt) }
func strs() *fieldSpec    { return leaf(tStrings) }

// Messages for the fields that change what gets deployed: fjord says it
// does not support them yet and what to do meanwhile, never "remove it".
const (
	refusePlugin    = "fjord does not run config management plugins yet; meanwhile commit the plugin's output as YAML and point source.path at it"
	refuseEnvsubst  = "fjord does not substitute environment variables in kustomize settings yet; meanwhile write the values out in commonAnnotations"
	refuseLabelOpts = "fjord does not support this kustomize label option yet; meanwhile put the labels transformer (labels: with includeSelectors/includeTemplates) in the kustomization.yaml in git"
	refuseKustHelm  = "fjord does not render Helm charts inside kustomize (helmCharts) yet; meanwhile point a source at the chart with source.helm"
	refuseJsonnet   = "fjord does not render jsonnet yet; meanwhile commit the rendered YAML and point source.path at it"
)

// objectMetaSchema is the metadata Applications and AppProjects share.
func objectMetaSchema() *fieldSpec {
	return objectOf(map[string]*fieldSpec{
		"name":        str(),
		"namespace":   str(),
		"labels":      strMap(),
		"annotations": strMap(),
		"finalizers":  strs(),
	})
}

// sourceSchema is spec.source and each entry of spec.sources.
func sourceSchema() *fieldSpec {
	return objectOf(map[string]*fieldSpec{
		"repoURL":        str(),
		"targetRevision": str(),
		"path":           str(),
		"chart":          str(),
		"ref":            str(),
		"name":           str(),
		"directory": objectOf(map[string]*fieldSpec{
			"recurse": boolean(),
			"include": str(),
			"exclude": str(),
			"jsonnet": refusedUnlessEmpty(refuseJsonnet),
		}),
		"helm": objectOf(map[string]*fieldSpec{
			"valueFiles":   strs(),
			"values":       str(),
			"valuesObject": leaf(tObjectAny),
			"parameters": objectsOf(map[string]*fieldSpec{
				"name":        str(),
				"value":       str(),
				"forceString": boolean(),
			}),
			"fileParameters": objectsOf(map[string]*fieldSpec{
				"name": str(),
				"path": str(),
			}),
			"releaseName":             str(),
			"namespace":               str(),
			"skipCrds":                boolean(),
			"skipTests":               boolean(),
			"skipSchemaValidation":    boolean(),
			"passCredentials":         boolean(),
			"ignoreMissingValueFiles": boolean(),
			"version":                 str(),
			"kubeVersion":             str(),
			"apiVersions":             strs(),
		}),
		"kustomize": objectOf(map[string]*fieldSpec{
			"images":                 strs(),
			"namePrefix":             str(),
			"nameSuffix":             str(),
			"commonLabels":           strMap(),
			"commonAnnotations":      strMap(),
			"forceCommonLabels":      boolean(),
			"forceCommonAnnotations": boolean(),
			"namespace":              str(),
			"replicas": objectsOf(map[string]*fieldSpec{
				"name":  str(),
				"count": leaf(tAny),
			}),
			"patches": objectsOf(map[string]*fieldSpec{
				"path":    str(),
				"patch":   str(),
				"target":  leaf(tObjectAny),
				"options": leaf(tObjectAny),
			}),
			"components":                strs(),
			"ignoreMissingComponents":   boolean(),
			"version":                   str(),
			"commonAnnotationsEnvsubst": refused(refuseEnvsubst),
			"labelWithoutSelector":      refused(refuseLabelOpts),
			"labelIncludeTemplates":     refused(refuseLabelOpts),
			"kubeVersion":               refused(refuseKustHelm),
			"apiVersions":               refused(refuseKustHelm),
		}),
		"plugin": refused(refusePlugin),
	})
}

var applicationSchema = objectOf(map[string]*fieldSpec{
	"apiVersion": str(),
	"kind":       str(),
	"metadata":   objectMetaSchema(),
	"spec": objectOf(map[string]*fieldSpec{
		"project": str(),
		"source":  sourceSchema(),
		"sources": objectsOf(sourceSchema().fields),
		"destination": objectOf(map[string]*fieldSpec{
			"server":    str(),
			"name":      str(),
			"namespace": str(),
		}),
		"syncPolicy": objectOf(map[string]*fieldSpec{
			"automated": objectOf(map[string]*fieldSpec{
				"enabled":    boolean(),
				"prune":      boolean(),
				"selfHeal":   boolean(),
				"allowEmpty": boolean(),
			}),
			"syncOptions": strs(),
			"retry": objectOf(map[string]*fieldSpec{
				"limit": integer(),
				"backoff": objectOf(map[string]*fieldSpec{
					"duration":    str(),
					"factor":      integer(),
					"maxDuration": str(),
				}),
			}),
			"managedNamespaceMetadata": objectOf(map[string]*fieldSpec{
				"labels":      strMap(),
				"annotations": strMap(),
			}),
		}),
		"ignoreDifferences": objectsOf(map[string]*fieldSpec{
			"group":                 str(),
			"kind":                  str(),
			"name":                  str(),
			"namespace":             str(),
			"jsonPointers":          strs(),
			"jqPathExpressions":     strs(),
			"managedFieldsManagers": strs(),
		}),
		"revisionHistoryLimit": integer(),
		"info": objectsOf(map[string]*fieldSpec{
			"name":  str(),
			"value": str(),
		}),
	}),
})

// checkFields checks every field of v against s.fields: unknown fields,
// refused fields and wrong types are problems, and are deleted from v so
// that the rest still decodes and is checked.
func (s *fieldSpec) checkFields(prefix string, v map[string]any, ps *problems) {
	for _, k := range sortedNames(v) {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		sub, ok := s.fields[k]
		if !ok {
			delete(v, k)
			switch path {
			case "status", "operation":
				// Argo CD writes these; they are not configuration.
				ps.add(path, "%s: Argo CD's %s field is not configuration: delete it from the file", path, k)
			case "metadata.creationTimestamp", "metadata.uid", "metadata.resourceVersion", "metadata.generation", "metadata.managedFields":
				ps.add(path, "%s: written by the API server (kubectl get -o yaml), not configuration: delete it from the file", path)
			default:
				ps.add(path, "%s: fjord does not know this field (it knows %s here): check the spelling", path, strings.Join(sortedNames(s.fields), ", "))
			}
			continue
		}
		if sub.refuse != "" {
			if !(sub.emptyOK && isEmpty(v[k])) {
				delete(v, k)
				ps.add(path, "%s: %s", path, sub.refuse)
				continue
			}
		}
		if !sub.check(path, v[k], ps) {
			delete(v, k)
		}
	}
}

// check reports whether v has the type s wants, adding the problem if not.
func (s *fieldSpec) check(path string, v any, ps *problems) bool {
	if v == nil {
		return true // null is as if absent
	}
	switch s.typ {
	case tAny:
		return true
	case tObjectAny:
		if _, ok := v.(map[string]any); ok {
			return true
		}
		ps.add(path, "%s: want an object, got %s", path, describe(v))
	case tString:
		if _, ok := v.(string); ok {
			return true
		}
		ps.add(path, "%s: want a string, got %s: quote it", path, describe(v))
	case tBool:
		if _, ok := v.(bool); ok {
			return true
		}
		ps.add(path, "%s: want true or false, got %s", path, describe(v))
	case tInt:
		if f, ok := v.(float64); ok && f == math.Trunc(f) {
			return true
		}
		ps.add(path, "%s: want a whole number, got %s", path, describe(v))
	case tStrings:
		l, ok := v.([]any)
		if !ok {
			ps.add(path, "%s: want a list of strings, got %s", path, describe(v))
			return false
		}
		good := true
		for i, e := range l {
			if _, ok := e.(string); !ok {
				ps.add(fmt.Sprintf("%s[%d]", path, i), "%s[%d]: want a string, got %s: quote it", path, i, describe(e))
				good = false
			}
		}
		return good
	case tStringMap:
		m, ok := v.(map[string]any)
		if !ok {
			ps.add(path, "%s: want a map of strings, got %s", path, describe(v))
			return false
		}
		good := true
		for _, k := range sortedNames(m) {
			if _, ok := m[k].(string); !ok {
				ps.add(path+"."+k, "%s.%s: want a string, got %s: quote it", path, k, describe(m[k]))
				good = false
			}
		}
		return good
	case tObject:
		m, ok := v.(map[string]any)
		if !ok {
			ps.add(path, "%s: want an object, got %s", path, describe(v))
			return false
		}
		s.checkFields(path, m, ps)
		return true
	case tObjects:
		l, ok := v.([]any)
		if !ok {
			ps.add(path, "%s: want a list, got %s", path, describe(v))
			return false
		}
		for i, e := range l {
			at := fmt.Sprintf("%s[%d]", path, i)
			m, ok := e.(map[string]any)
			if !ok {
				ps.add(at, "%s: want an object, got %s", at, describe(e))
				l[i] = map[string]any{}
				continue
			}
			s.checkFields(at, m, ps)
		}
		return true
	}
	return false
}

// isEmpty is true for null, {} and [].
func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// describe names a decoded JSON value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%v", v)
}

func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// compileGlob turns an Argo CD directory glob into a regexp matched
// against a path relative to source.path: '*' matches any run of
// characters ('/' included, as Argo CD's globs do), '?' one character,
// [...] a class and {a,b} either alternative. "" matches nothing.
func compileGlob(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	depth := 0
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '{':
			depth++
			b.WriteString("(?:")
		case '}':
			if depth == 0 {
				return nil, fmt.Errorf("'}' without '{'")
			}
			depth--
			b.WriteString(")")
		case ',':
			if depth > 0 {
				b.WriteString("|")
			} else {
				b.WriteString(",")
			}
		case '[':
			j := strings.IndexByte(pattern[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("'[' without ']'")
			}
			class := pattern[i+1 : i+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + class + "]")
			i += j
		case '\\':
			if i+1 < len(pattern) {
				i++
				b.WriteString(regexp.QuoteMeta(string(pattern[i])))
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("'{' without '}'")
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
