package reconciler

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// editKustomization applies spec.source.kustomize to the kustomization
// at dir of the in-memory tree before it is built, as Argo CD's
// `kustomize edit` calls do: images and replicas merged by name, prefix,
// suffix and namespace set, labels and annotations added (a different
// value of a key already there is an error unless forced), patches and
// components appended.
func editKustomization(fs filesys.FileSystem, dir string, k *KustomizeSource) error {
	var file string
	for _, n := range kustomizationFiles {
		if fs.Exists(path.Join(dir, n)) {
			file = path.Join(dir, n)
			break
		}
	}
	rel := strings.TrimPrefix(file, "/")
	data, err := fs.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", rel, err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%s is not YAML: %w", rel, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	if len(k.Images) > 0 {
		imgs := mapList(m["images"])
		for _, s := range k.Images {
			img, err := parseKustomizeImage(s)
			if err != nil {
				return err
			}
			replaced := false
			for i, e := range imgs {
				if e["name"] == img["name"] {
					imgs[i], replaced = img, true
				}
			}
			if !replaced {
				imgs = append(imgs, img)
			}
		}
		m["images"] = anyList(imgs)
	}
	if k.NamePrefix != "" {
		m["namePrefix"] = k.NamePrefix
	}
	if k.NameSuffix != "" {
		m["nameSuffix"] = k.NameSuffix
	}
	if k.Namespace != "" {
		m["namespace"] = k.Namespace
	}
	for _, f := range []struct {
		key   string
		add   map[string]string
		force bool
	}{{"commonLabels", k.CommonLabels, k.ForceCommonLabels}, {"commonAnnotations", k.CommonAnnotations, k.ForceCommonAnnotations}} {
		if len(f.add) == 0 {
			continue
		}
		cur, _ := m[f.key].(map[string]any)
		if cur == nil {
			cur = map[string]any{}
		}
		for _, key := range sortedNames(f.add) {
			if old, ok := cur[key]; ok && old != f.add[key] && !f.force {
				return fmt.Errorf("spec.source.kustomize.%s: %s already sets %s to %v: set spec.source.kustomize.force%s: true to override it, or drop it from one of them", f.key, rel, key, old, strings.ToUpper(f.key[:1])+f.key[1:])
			}
			cur[key] = f.add[key]
		}
		m[f.key] = cur
	}
	if len(k.Replicas) > 0 {
		reps := mapList(m["replicas"])
		for i, r := range k.Replicas {
			n, err := r.count()
			if err != nil {
				return fmt.Errorf("spec.source.kustomize.replicas[%d]: %w", i, err)
			}
			e := map[string]any{"name": r.Name, "count": n}
			replaced := false
			for j, old := range reps {
				if old["name"] == r.Name {
					reps[j], replaced = e, true
				}
			}
			if !replaced {
				reps = append(reps, e)
			}
		}
		m["replicas"] = anyList(reps)
	}
	if len(k.Patches) > 0 {
		ps := mapList(m["patches"])
		ps = append(ps, k.Patches...)
		m["patches"] = anyList(ps)
	}
	if len(k.Components) > 0 {
		cs := m["components"]
		list, _ := cs.([]any)
		for _, c := range k.Components {
			if !fs.Exists(path.Join(dir, c)) {
				if k.IgnoreMissingComponents {
					continue
				}
				return fmt.Errorf("spec.source.kustomize.components: %q is not a directory of this commit (relative to %s): fix the path, or set ignoreMissingComponents: true", c, pathOrRoot(strings.TrimPrefix(dir, "/")))
			}
			list = append(list, c)
		}
		m["components"] = list
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	return fs.WriteFile(file, out)
}

// parseKustomizeImage parses an image as `kustomize edit set image`
// does: [name=]newName[:tag][@digest], or name=*:tag to keep the name.
func parseKustomizeImage(s string) (map[string]any, error) {
	name, ref := "", s
	if before, after, ok := strings.Cut(s, "="); ok {
		if before == "" || after == "" {
			return nil, fmt.Errorf("spec.source.kustomize.images: %q: write name=newName:tag, name:tag or name@digest", s)
		}
		name, ref = before, after
	}
	img := map[string]any{}
	var newName, tag, digest string
	if i := strings.Index(ref, "@"); i >= 0 {
		ref, digest = ref[:i], ref[i+1:]
	}
	// A ':' after the last '/' is a tag; before it, a registry port.
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref, tag = ref[:i], ref[i+1:]
	}
	newName = ref
	if name == "" {
		name, newName = newName, ""
	}
	if name == "" {
		return nil, fmt.Errorf("spec.source.kustomize.images: %q names no image: write name=newName:tag, name:tag or name@digest", s)
	}
	img["name"] = name
	if newName != "" && newName != "*" && newName != name {
		img["newName"] = newName
	}
	if tag != "" {
		img["newTag"] = tag
	}
	if digest != "" {
		img["digest"] = digest
	}
	return img, nil
}

// count reads a replica count: a number, or a string holding one.
func (r KustomizeReplica) count() (int64, error) {
	var n int64
	if err := json.Unmarshal(r.Count, &n); err == nil {
		return n, nil
	}
	var s string
	if err := json.Unmarshal(r.Count, &s); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("count %s is not a whole number", string(r.Count))
}

func anyList(l []map[string]any) []any {
	out := make([]any, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}
