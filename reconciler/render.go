package reconciler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/fjordhq/fjord/storage"
)

// maxTreeBytes bounds how much of a commit's tree is read into memory for
// one render; a GitOps repo this large is almost certainly a mistake.
const maxTreeBytes = 256 << 20

// kustomizationFiles are the names kustomize looks for, in its order.
var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// ResolveRevision turns a targetRevision into a commit using the repo's
// in-memory ref snapshot: HEAD, a branch, a tag (peeled), a full ref name
// or a full 40-hex commit.
func ResolveRevision(refs *storage.Refs, rev string) (string, error) {
	switch {
	case rev == "" || rev == "HEAD":
		if refs.HeadHash == "" {
			return "", fmt.Errorf("HEAD of the repo points at nothing yet: push a commit first")
		}
		return refs.HeadHash, nil
	case fullSHA.MatchString(rev):
		return rev, nil
	}
	for _, name := range []string{rev, "refs/heads/" + rev, "refs/tags/" + rev} {
		if r, ok := refs.Lookup(name); ok {
			if r.Peeled != "" {
				return r.Peeled, nil
			}
			return r.Hash, nil
		}
	}
	return "", fmt.Errorf("targetRevision %q is neither a branch, a tag nor a full commit hash of the repo", rev)
}

// Render builds the manifests at dir of commit in the bare repo at
// repoPath. The commit's tree is copied into an in-memory filesystem (no
// checkout), and kustomize runs over it with plugins, exec functions and
// remote bases disabled. A dir without a kustomization file is read as
// plain YAML files (not recursively).
func Render(repoPath, commit, dir string) ([]*unstructured.Unstructured, error) {
	return RenderSource(repoPath, commit, Source{Path: dir})
}

// RenderSource renders an app's source at commit: its path, read with
// its source.directory settings when the path has no kustomization (a
// kustomization with directory settings is refused: they would be
// ignored).
func RenderSource(repoPath, commit string, src Source) ([]*unstructured.Unstructured, error) {
	objs, _, err := renderSource(repoPath, commit, src)
	return objs, err
}

// renderSource renders as RenderSource does and also returns the render's
// inputs: what it read of the tree, so that a commit touching none of it
// need not render again.
func renderSource(repoPath, commit string, src Source) ([]*unstructured.Unstructured, *renderInputs, error) {
	tree, err := treeFS(repoPath, commit)
	if err != nil {
		return nil, nil, err
	}
	fs := &recordingFS{FileSystem: tree, in: newRenderInputs()}
	objs, err := renderFS(fs, commit, src)
	return objs, fs.in, err
}

func renderFS(fs filesys.FileSystem, commit string, src Source) ([]*unstructured.Unstructured, error) {
	dir := src.Path
	root := "/" + strings.Trim(path.Clean("/"+dir), "/")
	if !fs.IsDir(root) {
		return nil, fmt.Errorf("path %q does not exist at commit %.12s: check spec.source.path", dir, commit)
	}
	if !hasKustomization(fs, root) {
		if err := writePlainKustomization(fs, root, src.Directory); err != nil {
			return nil, err
		}
	} else if d := src.Directory; d != nil && (d.Recurse || d.Include != "" || d.Exclude != "") {
		return nil, fmt.Errorf("%s holds a kustomization, so spec.source.directory (recurse, include, exclude) would be ignored: drop spec.source.directory, or the kustomization", pathOrRoot(dir))
	}
	if src.Kustomize != nil {
		if err := editKustomization(fs, root, src.Kustomize); err != nil {
			return nil, err
		}
	}
	if err := checkLocalOnly(fs, root); err != nil {
		return nil, err
	}
	opts := krusty.MakeDefaultOptions()
	opts.PluginConfig = types.DisabledPluginConfig()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	resMap, err := krusty.MakeKustomizer(opts).Run(fs, root)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s at %.12s: %w%s", strings.TrimPrefix(root, "/"), commit, err, kustomizeHint(err))
	}
	var out []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", root, err)
		}
		if m["apiVersion"] == nil || m["kind"] == nil {
			return nil, fmt.Errorf("kustomize build %s: an object lacks apiVersion or kind: %.200v", root, m)
		}
		// Round-trip through JSON: YAML decodes integers as int, which
		// unstructured's deep copy does not accept; JSON gives int64.
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", root, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", root, err)
		}
		if u.GetName() == "" {
			return nil, fmt.Errorf("kustomize build %s: a %s has no metadata.name", root, u.GetKind())
		}
		out = append(out, u)
	}
	return out, nil
}

// treeFS copies the tree of a commit into an in-memory filesystem rooted
// at "/". Symlinks and submodules are left out: they could point outside
// the tree.
func treeFS(repoPath, commit string) (filesys.FileSystem, error) {
	repo, err := git.PlainOpen(repoPath)
	if err != nil {
		return nil, fmt.Errorf("open repo %s: %w", repoPath, err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("read commit %.12s: %w", commit, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree of %.12s: %w", commit, err)
	}
	fs := filesys.MakeFsInMemory()
	var total int64
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("walk tree of %.12s: %w", commit, err)
		}
		if entry.Mode == filemode.Dir {
			if err := fs.MkdirAll("/" + name); err != nil {
				return nil, err
			}
			continue
		}
		if entry.Mode != filemode.Regular && entry.Mode != filemode.Executable {
			continue
		}
		blob, err := repo.BlobObject(entry.Hash)
		if err != nil {
			return nil, fmt.Errorf("read %s at %.12s: %w", name, commit, err)
		}
		total += blob.Size
		if total > maxTreeBytes {
			return nil, fmt.Errorf("the tree of %.12s holds more than %d MiB: keep the manifests in a smaller repo", commit, maxTreeBytes>>20)
		}
		r, err := blob.Reader()
		if err != nil {
			return nil, fmt.Errorf("read %s at %.12s: %w", name, commit, err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s at %.12s: %w", name, commit, err)
		}
		if err := fs.WriteFile("/"+name, data); err != nil {
			return nil, err
		}
	}
	return fs, nil
}

func hasKustomization(fs filesys.FileSystem, dir string) bool {
	for _, n := range kustomizationFiles {
		if fs.Exists(path.Join(dir, n)) {
			return true
		}
	}
	return false
}

// kustomizeHint adds the fix to kustomize errors whose cause is common
// and whose message does not say it.
func kustomizeHint(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "newTag") && strings.Contains(msg, "cannot unmarshal number") {
		return `: a numeric-looking tag is read as a number; quote it: newTag: "2.0"`
	}
	return ""
}

// writePlainKustomization lists the YAML and JSON files of dir as
// resources, so a plain directory renders like Argo CD's directory source:
// the top level, or every level with recurse, less what include does not
// match and what exclude matches (paths relative to dir).
func writePlainKustomization(fs filesys.FileSystem, dir string, d *DirectorySource) error {
	var include, exclude *regexp.Regexp
	recurse := false
	if d != nil {
		recurse = d.Recurse
		var err error
		if d.Include != "" {
			if include, err = compileGlob(d.Include); err != nil {
				return fmt.Errorf("spec.source.directory.include %q: %w", d.Include, err)
			}
		}
		if d.Exclude != "" {
			if exclude, err = compileGlob(d.Exclude); err != nil {
				return fmt.Errorf("spec.source.directory.exclude %q: %w", d.Exclude, err)
			}
		}
	}
	var res []string
	var walk func(rel string) error
	walk = func(rel string) error {
		names, err := fs.ReadDir(path.Join(dir, rel))
		if err != nil {
			return fmt.Errorf("read %s: %w", path.Join(dir, rel), err)
		}
		for _, n := range names {
			p := path.Join(rel, n)
			if fs.IsDir(path.Join(dir, p)) {
				if recurse {
					if err := walk(p); err != nil {
						return err
					}
				}
				continue
			}
			switch strings.ToLower(path.Ext(n)) {
			case ".yaml", ".yml", ".json":
			default:
				continue
			}
			if (include != nil && !include.MatchString(p)) || (exclude != nil && exclude.MatchString(p)) {
				continue
			}
			res = append(res, p)
		}
		return nil
	}
	if err := walk(""); err != nil {
		return err
	}
	sort.Strings(res)
	b, err := yaml.Marshal(map[string]any{"resources": res})
	if err != nil {
		return err
	}
	return fs.WriteFile(path.Join(dir, "kustomization.yaml"), b)
}

// remoteLooking matches what kustomize would fetch over the network.
var remoteLooking = regexp.MustCompile(`^([a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/|bitbucket\.org/)|\?ref=|\.git(//|$)`)

// checkLocalOnly refuses kustomizations, reachable from root, that would
// reach outside the commit: a resource, base or component that is not a
// path in the tree, or a file entry with a URL. kustomize has no switch to
// turn remote loading off, so fjord makes sure it is never asked to.
func checkLocalOnly(fs filesys.FileSystem, root string) error {
	var problems []string
	seen := map[string]bool{}
	var visit func(dir string) error
	visit = func(dir string) error {
		if seen[dir] {
			return nil
		}
		seen[dir] = true
		var p string
		for _, n := range kustomizationFiles {
			if fs.Exists(path.Join(dir, n)) {
				p = path.Join(dir, n)
				break
			}
		}
		if p == "" {
			return nil
		}
		data, err := fs.ReadFile(p)
		if err != nil {
			return err
		}
		var k map[string]any
		if yaml.Unmarshal(data, &k) != nil {
			return nil // kustomize reports the syntax error with more detail
		}
		rel := strings.TrimPrefix(p, "/")
		for _, key := range []string{"resources", "bases", "components"} {
			for _, e := range stringList(k[key]) {
				target := path.Join(dir, e)
				switch {
				case remoteLooking.MatchString(e) && !fs.Exists(target):
					problems = append(problems, fmt.Sprintf("%s: %s entry %q is remote; remote bases are disabled in fjord: vendor it into the repo", rel, key, e))
				case !fs.Exists(target):
					problems = append(problems, fmt.Sprintf("%s: %s entry %q is not a file or directory in this commit", rel, key, e))
				case fs.IsDir(target):
					if err := visit(target); err != nil {
						return err
					}
				}
			}
		}
		for _, key := range []string{"crds", "configurations", "generators", "transformers", "validators", "patchesStrategicMerge"} {
			for _, e := range stringList(k[key]) {
				if remoteLooking.MatchString(e) {
					problems = append(problems, fmt.Sprintf("%s: %s entry %q is remote, which fjord does not fetch: vendor it into the repo", rel, key, e))
				}
			}
		}
		if _, ok := k["helmCharts"]; ok {
			problems = append(problems, fmt.Sprintf("%s: helmCharts runs helm, which fjord does not do: render the chart into the repo", rel))
		}
		for _, gen := range []string{"configMapGenerator", "secretGenerator"} {
			for _, g := range mapList(k[gen]) {
				for _, key := range []string{"files", "envs"} {
					for _, e := range stringList(g[key]) {
						if strings.Contains(e, "://") {
							problems = append(problems, fmt.Sprintf("%s: %s %s entry %q is remote, which fjord does not fetch", rel, gen, key, e))
						}
					}
				}
			}
		}
		for _, pt := range mapList(k["patches"]) {
			if s, ok := pt["path"].(string); ok && strings.Contains(s, "://") {
				problems = append(problems, fmt.Sprintf("%s: patch path %q is remote, which fjord does not fetch", rel, s))
			}
		}
		return nil
	}
	if err := visit(root); err != nil {
		return fmt.Errorf("check kustomizations: %w", err)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func stringList(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func mapList(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// renderInputs are the paths of a tree one render read (relative to the
// repo root, no leading '/'): files it read or probed, directories it
// listed, and trees it walked. A commit that changes none of them renders
// the same objects.
type renderInputs struct {
	mu    sync.Mutex
	files map[string]bool
	dirs  map[string]bool
	trees map[string]bool
}

func newRenderInputs() *renderInputs {
	return &renderInputs{files: map[string]bool{}, dirs: map[string]bool{}, trees: map[string]bool{}}
}

func (in *renderInputs) add(m map[string]bool, p string) {
	in.mu.Lock()
	m[strings.Trim(path.Clean("/"+p), "/")] = true
	in.mu.Unlock()
}

// touchedBy reports whether any of the changed paths (relative to the
// repo root) is one the render read, a new entry of a directory it listed,
// or anything under a tree it walked.
func (in *renderInputs) touchedBy(changed []string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, c := range changed {
		if in.files[c] || in.dirs[path.Dir(c)] || (path.Dir(c) == "." && in.dirs[""]) {
			return true
		}
		for t := range in.trees {
			if t == "" || c == t || strings.HasPrefix(c, t+"/") {
				return true
			}
		}
	}
	return false
}

// recordingFS records what a render reads of the in-memory tree.
type recordingFS struct {
	filesys.FileSystem
	in *renderInputs
}

func (f *recordingFS) Open(p string) (filesys.File, error) {
	f.in.add(f.in.files, p)
	return f.FileSystem.Open(p)
}

func (f *recordingFS) ReadFile(p string) ([]byte, error) {
	f.in.add(f.in.files, p)
	return f.FileSystem.ReadFile(p)
}

func (f *recordingFS) Exists(p string) bool {
	f.in.add(f.in.files, p)
	return f.FileSystem.Exists(p)
}

func (f *recordingFS) IsDir(p string) bool {
	f.in.add(f.in.files, p)
	return f.FileSystem.IsDir(p)
}

func (f *recordingFS) ReadDir(p string) ([]string, error) {
	f.in.add(f.in.dirs, p)
	return f.FileSystem.ReadDir(p)
}

func (f *recordingFS) Glob(pattern string) ([]string, error) {
	f.in.add(f.in.trees, path.Dir(pattern))
	return f.FileSystem.Glob(pattern)
}

func (f *recordingFS) Walk(p string, fn filepath.WalkFunc) error {
	f.in.add(f.in.trees, p)
	return f.FileSystem.Walk(p, fn)
}

func (f *recordingFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	f.in.add(f.in.files, p)
	return f.FileSystem.CleanedAbs(p)
}

// changedPaths lists the paths (files, relative to the repo root) that
// differ between two commits of the bare repo at repoPath.
func changedPaths(repoPath, from, to string) ([]string, error) {
	repo, err := git.PlainOpen(repoPath)
	if err != nil {
		return nil, fmt.Errorf("open repo %s: %w", repoPath, err)
	}
	trees := make([]*object.Tree, 2)
	for i, c := range []string{from, to} {
		co, err := repo.CommitObject(plumbing.NewHash(c))
		if err != nil {
			return nil, fmt.Errorf("read commit %.12s: %w", c, err)
		}
		if trees[i], err = co.Tree(); err != nil {
			return nil, fmt.Errorf("read tree of %.12s: %w", c, err)
		}
	}
	changes, err := object.DiffTree(trees[0], trees[1])
	if err != nil {
		return nil, fmt.Errorf("diff %.12s..%.12s: %w", from, to, err)
	}
	var out []string
	for _, ch := range changes {
		for _, n := range []string{ch.From.Name, ch.To.Name} {
			if n != "" {
				out = append(out, n)
			}
		}
	}
	return out, nil
}
