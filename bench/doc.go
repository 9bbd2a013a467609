// Package bench tells an operator whether a machine is fit for etcd and for
// a Git repo-server, and how fast a Git server answers.
//
// # Disk
//
// RunDisk runs, on real files in a fresh directory under the directory it is
// given, the access patterns that decide those fits:
//
//   - etcd-wal: 2,300-byte sequential appends into a preallocated 64 MiB
//     segment with fdatasync after each, the IBM/etcd fio recipe
//     (--rw=write --ioengine=sync --fdatasync=1 --bs=2300); a sample is the
//     fdatasync, as etcd's wal_fsync_duration_seconds measures it.
//   - seq-8k-fdatasync: sequential 8 KiB writes with fdatasync after each, for
//     the sequential IOPS of etcd's hardware guide.
//   - bbolt-commit: one small put per go.etcd.io/bbolt transaction.
//   - git-loose-objects: git's loose-object write: temp file, fsync, rename,
//     fsync of the directory.
//   - randread-4k-qd1, randread-4k-qd16, randwrite-4k-qd16: 4 KiB O_DIRECT
//     random I/O at queue depth 1 and 16, pack reads on a cold cache.
//   - etcd-wal-noisy-neighbour: the WAL again while random reads and writes
//     share the disk, with the rise of its p99 over the quiet run.
//
// Each workload runs for a warmup whose samples are dropped, then for the
// measured duration; latencies go into an HdrHistogram (three significant
// digits). Judge holds the results to the published thresholds (etcd, IBM
// Cloud, OpenShift, GitLab's Gitaly guidance) and says how far each figure is
// from its line. With DiskOptions.CompareFio, fio runs the etcd job in the
// same run and both are reported side by side.
//
// A run refuses to start with ErrLowSpace when the filesystem has less than
// twice the space it needs, and removes every file it created, one by one,
// whether it succeeds, fails or its context is cancelled; it never removes
// a file it did not create.
//
// # Git
//
// RunGit drives the real git client against any Git server: ref
// advertisement (ls-remote), an incremental fetch of one commit, and full and
// shallow clones, each with a latency distribution, throughput and errors.
// It only reads from the server. StartSelf starts a temporary fjord, the
// same assembly as `fjord serve` (internal/server), on a generated
// repository (GenerateRepo) for runs with no setup.
//
// # Reports
//
// WriteText and WriteGitText write tables for people; WriteHTML writes a
// self-contained page with inline SVG histograms. DiskReport and GitReport
// marshal to JSON with stable layouts named by DiskSchema and GitSchema: a
// schema version changes only when a field is renamed, removed or changes
// meaning; fields may be added within a version. Durations are integer
// nanoseconds (keys ending in _ns), rates are per second, sizes are bytes.
// testdata/disk-report.golden.json and testdata/git-report.golden.json show
// every field.
package bench
