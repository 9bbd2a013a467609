package bench_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fjordhq/fjord/bench"
)

var update = flag.Bool("update", false, "rewrite the golden JSON files in testdata")

// sampleLatency is a latency summary with every field set.
func sampleLatency() bench.Latency {
	return bench.Latency{
		Samples: 12345, Min: 41 * time.Microsecond, Mean: 130 * time.Microsecond,
		P50: 110 * time.Microsecond, P90: 180 * time.Microsecond, P99: 2 * time.Millisecond,
		P999: 8 * time.Millisecond, Max: 25 * time.Millisecond,
		Bins: []bench.Bin{{Upper: 50 * time.Microsecond, Count: 12000}, {Upper: 63 * time.Microsecond, Count: 345}},
	}
}

// sampleDiskReport is a disk report with every field, optional ones
// included, set to a fixed value.
func sampleDiskReport() *bench.DiskReport {
	rot := false
	wal := bench.Result{
		Name: bench.WorkloadEtcdWAL, Title: "etcd WAL", Measures: "fdatasync",
		BlockSize: 2300, QueueDepth: 1, Elapsed: 10 * time.Second,
		Ops: 12345, Bytes: 28393500, IOPS: 1234.5, MBps: 2.8, Latency: sampleLatency(),
	}
	noisy := wal
	noisy.Name = bench.WorkloadNoisy
	noisy.Neighbour = &bench.Neighbour{Readers: 6, Writers: 2, ReadIOPS: 30000, WriteIOPS: 8000, BaselineP99: 2 * time.Millisecond, P99Rise: 3.5}
	rep := &bench.DiskReport{
		Schema:   bench.DiskSchema,
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Host:     "etcd-1",
		Dir:      "/var/lib/etcd",
		Duration: 10 * time.Second,
		Warmup:   time.Second,
		Device: bench.Device{
			Filesystem: "ext4", MountPoint: "/var/lib/etcd", MountOptions: "rw,noatime", SuperOptions: "rw",
			Source: "/dev/nvme0n1p2", BlockDevice: "nvme0n1", Partition: "nvme0n1p2", Underlying: []string{"sda"},
			Model: "Samsung PM9A3", Rotational: &rot, WriteCache: "write through", Scheduler: "none",
			LogicalBlockSize: 512, FreeBytes: 1 << 40, TotalBytes: 2 << 40,
			IOLimits: []string{"/sys/fs/cgroup/io.max: 259:0 riops=1000"}, Kernel: "6.8.0", Notes: []string{"a device note"},
		},
		Workloads: []bench.Result{wal, noisy},
		Fio: &bench.FioComparison{
			Command: "fio --name=etcd", Version: "fio-3.33",
			Fio: sampleLatency(), FioIOPS: 1200, Fjord: sampleLatency(), FjordIOPS: 1234.5,
			P50Diff: 0.01, P99Diff: -0.02, Agree: true,
			Rounds: []bench.FioRound{{Fio: sampleLatency(), FioIOPS: 1200, Fjord: sampleLatency(), FjordIOPS: 1234.5}},
		},
		Notes: []string{"a run note"},
	}
	rep.Verdicts = bench.Judge(rep)
	return rep
}

// sampleGitReport is a Git report with every field set.
func sampleGitReport() *bench.GitReport {
	rep := &bench.GitReport{
		Schema: bench.GitSchema, Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		URL: "ssh://git@fjord:2222/team/app", GitVersion: "git version 2.39.5",
		Concurrency: 4, Duration: 10 * time.Second, Warmup: time.Second,
		Branch: "main", Head: "0123456789abcdef0123456789abcdef01234567",
		Repo:        bench.RepoSize{Commits: 100, Refs: 1, Objects: 2345, Bytes: 1 << 20},
		ClientStart: 3 * time.Millisecond,
		Workloads: []bench.GitResult{{
			Name: bench.GitClone, Title: "full bare clone", Command: "git clone --bare ssh://git@fjord:2222/team/app",
			Measures: "one git command", Ops: 40, Errors: 1, FirstError: "git clone: exit status 128", OpsPerSec: 4, Elapsed: 10 * time.Second,
			Bytes: 40 << 20, MBps: 4.2, Latency: sampleLatency(),
		}},
		Notes: []string{"a note"},
	}
	rep.Verdicts = bench.JudgeGit(rep)
	return rep
}

// TestJSONSchemaIsStable pins the JSON layout of both reports to golden
// files. A failure means a field was renamed, removed or added: renaming or
// removing one breaks scripts and needs a new schema version; adding one is
// fine, with go test -update to record it.
func TestJSONSchemaIsStable(t *testing.T) {
	for _, tt := range []struct {
		file string
		v    any
	}{
		{"disk-report.golden.json", sampleDiskReport()},
		{"git-report.golden.json", sampleGitReport()},
	} {
		got, err := json.MarshalIndent(tt.v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join("testdata", tt.file)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s changed; if on purpose, run go test ./bench -run JSONSchema -update and bump the schema version when a field was renamed or removed\ngot:\n%s", path, got)
		}
	}
	if bench.DiskSchema != "fjord.bench.disk/v1" || bench.GitSchema != "fjord.bench.git/v1" {
		t.Errorf("schema versions changed: %s, %s", bench.DiskSchema, bench.GitSchema)
	}
}
