package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"time"
)

// RepoShape sizes a generated repository. Each zero field takes the default
// its comment gives.
type RepoShape struct {
	// Files is how many files the tree holds. Default 200.
	Files int
	// Commits is the length of the history. Default 100.
	Commits int
	// FileSize is the bytes of each file. Default 4 KiB.
	FileSize int
	// Changes is how many files each commit rewrites. Default 10.
	Changes int
}

// WithDefaults returns s with every zero field set to its default.
func (s RepoShape) WithDefaults() RepoShape {
	if s.Files <= 0 {
		s.Files = 200
	}
	if s.Commits <= 0 {
		s.Commits = 100
	}
	if s.FileSize <= 0 {
		s.FileSize = 4 << 10
	}
	if s.Changes <= 0 {
		s.Changes = 10
	}
	s.Changes = min(s.Changes, s.Files)
	return s
}

// String describes the shape for people: "200 files of 4.00 KiB, 100
// commits, each after the first rewriting 10 of them".
func (s RepoShape) String() string {
	return fmt.Sprintf("%s files of %s, %s commits, each after the first rewriting %s of them",
		formatCount(float64(s.Files)), formatBytes(int64(s.FileSize)), formatCount(float64(s.Commits)), formatCount(float64(s.Changes)))
}

// GenerateRepo creates a bare repository at dir holding a deterministic
// history on branch main, shaped like a GitOps repository: many small text
// files of which each commit rewrites a few. It streams the history into one
// git fast-import, so a few hundred commits take well under a second.
func GenerateRepo(ctx context.Context, git, dir string, shape RepoShape) error {
	if git == "" {
		git = "git"
	}
	shape = shape.WithDefaults()
	init := exec.CommandContext(ctx, git, "init", "--quiet", "--bare", "--initial-branch=main", dir)
	init.WaitDelay = 5 * time.Second
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: git init %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	cmd := exec.CommandContext(ctx, git, "fast-import", "--quiet")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("bench: git fast-import: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: git fast-import: %w", err)
	}
	werr := writeHistory(in, shape)
	cerr := in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("bench: git fast-import in %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	if werr != nil {
		return fmt.Errorf("bench: git fast-import in %s: %w", dir, werr)
	}
	if cerr != nil {
		return fmt.Errorf("bench: git fast-import in %s: %w", dir, cerr)
	}
	return nil
}

// writeHistory writes a fast-import stream of shape's history: the first
// commit adds every file, each later one rewrites Changes of them.
func writeHistory(w io.Writer, shape RepoShape) error {
	bw := bufio.NewWriter(w)
	rng := rand.New(rand.NewPCG(1, 2))
	const epoch = 1_700_000_000
	content := func() string {
		var b strings.Builder
		for b.Len() < shape.FileSize {
			fmt.Fprintf(&b, "key%d: value-%016x\n", rng.IntN(1000), rng.Uint64())
		}
		return b.String()[:shape.FileSize]
	}
	for c := 1; c <= shape.Commits; c++ {
		msg := fmt.Sprintf("change %d\n", c)
		fmt.Fprintf(bw, "commit refs/heads/main\nmark :%d\ncommitter fjord bench <bench@fjord.invalid> %d +0000\ndata %d\n%s", c, epoch+c*60, len(msg), msg)
		if c > 1 {
			fmt.Fprintf(bw, "from :%d\n", c-1)
		}
		files := rng.Perm(shape.Files)[:shape.Changes]
		if c == 1 {
			files = rng.Perm(shape.Files)
		}
		for _, f := range files {
			body := content()
			fmt.Fprintf(bw, "M 100644 inline apps/app-%03d/config-%d.yaml\ndata %d\n%s\n", f%50, f, len(body), body)
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}
