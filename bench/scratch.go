package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// scratch is the directory one run works in: a fresh directory under the
// operator's --dir that holds only files this run created. It records every
// path it hands out, so cleanup removes exactly those, one by one, and never
// anything else: a file someone drops into it meanwhile survives, and the
// directory is then left in place with an error that says so.
type scratch struct {
	dir string

	mu    sync.Mutex
	files map[string]int // path → creation order
	dirs  []string       // in creation order; dir itself first
	next  int
}

// newScratch creates a fresh directory under parent.
func newScratch(parent string) (*scratch, error) {
	dir, err := os.MkdirTemp(parent, "fjord-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: create scratch directory in %s: %w", parent, err)
	}
	return &scratch{dir: dir, files: map[string]int{}, dirs: []string{dir}}, nil
}

// path returns the path of name inside the scratch directory.
func (s *scratch) path(name ...string) string {
	return filepath.Join(append([]string{s.dir}, name...)...)
}

// track records path as created by this run. Call it before the file can
// exist (for files another program creates, such as fio's) or right after
// creating it, with nothing that can fail in between.
func (s *scratch) track(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = s.next
	s.next++
}

// trackRename records that a tracked file moved from oldpath to newpath.
func (s *scratch) trackRename(oldpath, newpath string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.files, oldpath)
	s.files[newpath] = s.next
	s.next++
}

// create creates a new file in the scratch directory, failing if it exists.
func (s *scratch) create(name string, flag int) (*os.File, error) {
	path := s.path(name)
	f, err := os.OpenFile(path, flag|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench: create %s: %w", path, err)
	}
	s.track(path)
	return f, nil
}

// mkdir creates a directory in the scratch directory, doing nothing if this
// run already made it.
func (s *scratch) mkdir(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.dirs, path) {
		return nil
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		return fmt.Errorf("bench: create directory %s: %w", path, err)
	}
	s.dirs = append(s.dirs, path)
	return nil
}

// remove deletes a file this run created.
func (s *scratch) remove(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.files, path)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bench: remove %s: %w", path, err)
	}
	return nil
}

// cleanup removes every file and directory the run created, newest first. It
// is safe to call twice.
func (s *scratch) cleanup() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	paths := make([]string, 0, len(s.files))
	for p := range s.files {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, func(a, b string) int { return s.files[b] - s.files[a] })
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		delete(s.files, p)
	}
	for i := len(s.dirs) - 1; i >= 0; i-- {
		err := os.Remove(s.dirs[i])
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		s.dirs = slices.Delete(s.dirs, i, i+1)
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: clean up %s (remove it by hand once you have checked what is left): %w", s.dir, errors.Join(errs...))
	}
	return nil
}

// ensureDir checks that dir is a directory. When it does not exist and mk is
// set, it creates it and its missing parents, shallowest first, and returns
// them in that order for removeMade; otherwise the error names the nearest
// existing parent and both ways on.
func ensureDir(dir string, mk bool) ([]string, error) {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil, nil
	case err == nil:
		return nil, fmt.Errorf("bench: %s is not a directory: name a directory on the disk to measure", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("bench: %w", err)
	}
	var missing []string
	parent := filepath.Clean(dir)
	for {
		if _, err := os.Stat(parent); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		missing = append(missing, parent)
		next := filepath.Dir(parent)
		if next == parent {
			break
		}
		parent = next
	}
	if !mk {
		return nil, fmt.Errorf("bench: %s does not exist (its nearest existing parent is %s): create it on the disk you want to measure, or pass --mkdir to create it for this run and remove it afterwards", dir, parent)
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			return nil, errors.Join(fmt.Errorf("bench: --mkdir: %w", err), removeMade(made))
		}
		made = append(made, missing[i])
	}
	return made, nil
}

// removeMade removes the directories ensureDir created, deepest first. One
// that is not empty, because someone put a file there meanwhile, is kept.
func removeMade(made []string) error {
	var errs []error
	for i := len(made) - 1; i >= 0; i-- {
		if err := os.Remove(made[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: remove the directories --mkdir created (check what is left in them and remove them by hand): %w", errors.Join(errs...))
	}
	return nil
}
