package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fjordhq/fjord/bench"
)

// exitCheckFailed is the exit status of a benchmark whose figures fail a
// check, distinct from 1 (the benchmark itself failed).
const exitCheckFailed = 3

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure whether a disk suits etcd and a repo-server, and how fast a Git server answers",
		Long: `bench runs workloads that tell an operator whether a machine is fit for its job.

  fjord bench disk --dir /var/lib/etcd     etcd, bbolt, Git and random-I/O workloads, with verdicts
  fjord bench git --url ssh://host/repo    ls-remote, fetch and clone against a Git server`,
	}
	cmd.AddCommand(newBenchDiskCmd(), newBenchGitCmd())
	return cmd
}

func newBenchDiskCmd() *cobra.Command {
	var (
		opts      bench.DiskOptions
		jsonOut   bool
		htmlFile  string
		workloads []string
	)
	cmd := &cobra.Command{
		Use:   "disk --dir PATH",
		Short: "Measure a disk with etcd, bbolt, Git and random-I/O workloads and judge it",
		Long: `disk runs, on real files in a fresh directory under --dir:

  etcd-wal                  2,300-byte appends to a preallocated 64 MiB segment, fdatasync after each
  seq-8k-fdatasync          sequential 8 KiB writes, fdatasync after each (IOPS)
  bbolt-commit              one small put per bbolt transaction
  git-loose-objects         temp file, fsync, rename, fsync directory
  randread-4k-qd1/qd16      4 KiB O_DIRECT random reads at queue depth 1 and 16
  randwrite-4k-qd16         4 KiB O_DIRECT random writes at queue depth 16
  etcd-wal-noisy-neighbour  the etcd WAL again while random reads and writes share the disk

and judges p99 latencies and IOPS against etcd's, OpenShift's and GitLab's
published thresholds. It refuses to start when the filesystem has less than
twice the space it needs, and removes every file it created, also on error
and on Ctrl-C.

Exit status: 0 when every check passes or warns, 3 when one fails, 1 when
the benchmark could not run.`,
		Example: `  fjord bench disk --dir /var/lib/etcd
  fjord bench disk --dir /srv/fjord --duration 30s --html report.html
  fjord bench disk --dir /var/lib/etcd --mkdir   # before etcd is installed
  fjord bench disk --dir /var/lib/etcd --workload etcd-wal,bbolt-commit --compare-fio`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Dir == "" {
				return fmt.Errorf("--dir is required: name a directory on the disk to measure, such as --dir /var/lib/etcd")
			}
			if len(workloads) > 0 {
				opts.Workloads = workloads
			}
			progress := newProgressLine(cmd.ErrOrStderr())
			opts.Progress = progress.update
			rep, err := bench.RunDisk(cmd.Context(), opts)
			progress.clear()
			if err != nil {
				return interrupted(cmd, err)
			}
			return finishReport(cmd, jsonOut, htmlFile, rep, rep.Verdicts,
				func(w io.Writer) error { return bench.WriteText(w, rep) },
				func(w io.Writer) error { return bench.WriteHTML(w, rep) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", "", "directory on the disk to measure (required)")
	f.BoolVar(&opts.MakeDir, "mkdir", false, "create --dir (and missing parents) when it does not exist, and remove it afterwards")
	f.DurationVar(&opts.Duration, "duration", 10*time.Second, "how long each workload is measured, after a warmup of a tenth of it (at most 1s)")
	opts.ReadFileSize = 1 << 30
	f.Var((*byteSize)(&opts.ReadFileSize), "file-size", "size of the random-I/O file (such as 4GiB, 512MiB); make it larger than the device's cache")
	f.StringSliceVar(&workloads, "workload", nil, "run only these workloads (comma-separated; default all)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON (schema "+bench.DiskSchema+")")
	f.StringVar(&htmlFile, "html", "", "also write a self-contained HTML report to this file")
	f.BoolVar(&opts.CompareFio, "compare-fio", false, "also run the etcd job with fio and print both side by side")
	return cmd
}

func newBenchGitCmd() *cobra.Command {
	var (
		opts      bench.GitOptions
		jsonOut   bool
		htmlFile  string
		self      bool
		selfShape = bench.RepoShape{}.WithDefaults()
	)
	cmd := &cobra.Command{
		Use:   "git --url URL",
		Short: "Measure a Git server: ref advertisement, incremental fetch, full and shallow clone",
		Long: `git drives the real git client against any Git server (fjord or another) with
--concurrency clients at once, for --duration per workload:

  ls-remote         ref advertisement
  fetch-one-commit  fetch the newest commit of the default branch into a repository
                    holding its parent (what a CI runner or Argo CD does after a push);
                    nothing is written to the server
  clone             full bare clone
  clone-depth-1     shallow bare clone

after one untimed full clone that sizes the repository (commits, refs,
objects, bytes). It reports p50/p99 latency, throughput and errors for each
and judges them: a poll or a fetch after a push within fjord's half-second
goal, a clone within a tenth of the 60 s after which Flux gives up. Each
figure is a whole git command: it includes starting the git (and ssh)
client processes and a new connection, which the in-process "anything
new?" figure of make bench does not; the report says how long starting the
clients alone takes.

Exit status: 0 when every check passes or warns, 3 when one fails, 1 when
the benchmark could not run.`,
		Example: `  fjord bench git --url ssh://git@fjord.example:2222/platform/apps.git --ssh-key ~/.ssh/id_ed25519 --known-hosts fjord.known_hosts
  fjord bench git --url https://github.com/fjordhq/fjord.git --concurrency 4 --duration 30s
  fjord bench git --self --html git-report.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			progress := newProgressLine(cmd.ErrOrStderr())
			switch {
			case self && opts.URL != "":
				return fmt.Errorf("--self and --url exclude each other: --self measures a temporary fjord of its own")
			case self:
				progress.update(bench.Progress{Step: "--self", Detail: "starting a temporary fjord on a generated repository"})
				s, err := bench.StartSelf(cmd.Context(), bench.SelfOptions{Shape: selfShape})
				if err != nil {
					progress.clear()
					return err
				}
				defer s.Close()
				opts.URL, opts.SSHKey, opts.KnownHosts = s.URL, s.KeyFile, s.KnownHosts
			case opts.URL == "":
				return fmt.Errorf("--url is required: name the repository to measure, such as --url ssh://git@host:2222/team/repo.git, or use --self")
			}
			opts.Progress = progress.update
			rep, err := bench.RunGit(cmd.Context(), opts)
			progress.clear()
			if err != nil {
				return interrupted(cmd, err)
			}
			if self {
				rep.Notes = append(rep.Notes, "--self generated the repository and served it from a temporary fjord on 127.0.0.1: "+selfShape.String())
			}
			return finishReport(cmd, jsonOut, htmlFile, rep, rep.Verdicts,
				func(w io.Writer) error { return bench.WriteGitText(w, rep) },
				func(w io.Writer) error { return bench.WriteGitHTML(w, rep) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.URL, "url", "", "repository URL: ssh://, https://, git:// or file://")
	f.IntVar(&opts.Concurrency, "concurrency", 1, "clients running at once")
	f.DurationVar(&opts.Duration, "duration", 10*time.Second, "how long each workload is measured")
	f.StringSliceVar(&opts.Workloads, "workload", nil, "run only these workloads: "+strings.Join(bench.GitWorkloadNames(), ", ")+" (comma-separated; default all)")
	f.StringVar(&opts.SSHKey, "ssh-key", "", "private key for ssh:// URLs (passed to ssh -i with IdentitiesOnly)")
	f.StringVar(&opts.KnownHosts, "known-hosts", "", "known_hosts file holding the server's host key for ssh:// URLs, checked strictly (on a fjord server: fjord hostkey > FILE)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON (schema "+bench.GitSchema+")")
	f.StringVar(&htmlFile, "html", "", "also write a self-contained HTML report to this file")
	f.BoolVar(&self, "self", false, "start a temporary fjord on a generated repository and measure it")
	return cmd
}

// finishReport writes the HTML report when asked, prints rep as text or
// JSON, and turns a failed check into exit status 3.
func finishReport(cmd *cobra.Command, jsonOut bool, htmlFile string, rep any, verdicts []bench.Verdict, text, html func(io.Writer) error) error {
	if htmlFile != "" {
		if err := writeFileAtomic(htmlFile, html); err != nil {
			return err
		}
	}
	if err := writeReport(cmd.OutOrStdout(), jsonOut, rep, text); err != nil {
		return err
	}
	if htmlFile != "" && !jsonOut {
		fmt.Fprintf(cmd.OutOrStdout(), "\nHTML report: %s\n", htmlFile)
	}
	var failed []string
	for _, v := range verdicts {
		if v.Status == bench.StatusFail {
			failed = append(failed, v.Title)
		}
	}
	if len(failed) > 0 {
		return exitError{code: exitCheckFailed, err: fmt.Errorf("%d of %d checks failed (%s): see the verdicts above",
			len(failed), len(verdicts), strings.Join(failed, "; "))}
	}
	return nil
}

// byteSize is a flag value holding a size in bytes, written with an
// optional binary unit: 1048576, 1MiB, 1M and 1m are the same.
type byteSize int64

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Type() string { return "size" }

func (b *byteSize) Set(s string) error {
	num := strings.TrimRight(s, "KMGTiBkmgtib")
	unit := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "i"))
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
	sh, ok := shift[unit]
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if !ok || err != nil || n <= 0 {
		return fmt.Errorf("want a positive size such as 512MiB or 4GiB, not %q", s)
	}
	*b = byteSize(n << sh)
	return nil
}

// exitInterrupted is the exit status after Ctrl-C, as shells report it.
const exitInterrupted = 130

// interrupted turns the error of a run stopped by a signal into one that
// says so, and that its files are gone; other errors pass through.
func interrupted(cmd *cobra.Command, err error) error {
	if cmd.Context().Err() == nil || !errors.Is(err, context.Canceled) {
		return err
	}
	return exitError{code: exitInterrupted, err: fmt.Errorf("interrupted; every file the benchmark created has been removed (%w)", err)}
}

// writeReport writes rep as indented JSON or with text.
func writeReport(w io.Writer, jsonOut bool, rep any, text func(io.Writer) error) error {
	if !jsonOut {
		return text(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeFileAtomic writes a file through a temporary file in the same
// directory, so a failed or interrupted write never leaves half a report.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// progressLine shows benchmark progress on stderr: one line rewritten in
// place on a terminal, otherwise a plain line per step and every few seconds.
type progressLine struct {
	w   io.Writer
	tty bool

	mu     sync.Mutex
	step   string
	at     time.Time
	shown  bool
	length int
}

// plainEvery is how often progress is repeated when stderr is not a
// terminal.
const plainEvery = 5 * time.Second

func newProgressLine(w io.Writer) *progressLine {
	p := &progressLine{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progressLine) update(pr bench.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := pr.String()
	if p.tty {
		pad := max(p.length-len(line), 0)
		fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
		p.length, p.shown = len(line), true
		return
	}
	if pr.Step == p.step && time.Since(p.at) < plainEvery {
		return
	}
	p.step, p.at = pr.Step, time.Now()
	fmt.Fprintln(p.w, line)
}

// clear removes the progress line before the report is printed.
func (p *progressLine) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.shown {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.length))
		p.shown = false
	}
}
