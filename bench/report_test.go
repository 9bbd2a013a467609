package bench_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/bench"
)

func TestWriteHTMLIsSelfContained(t *testing.T) {
	rep := sampleDiskReport()
	rep.Dir = `/srv/<script>alert("x")</script>`
	var b strings.Builder
	if err := bench.WriteHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.HasPrefix(page, "<!doctype html>") || !strings.HasSuffix(strings.TrimSpace(page), "</html>") {
		t.Errorf("not a whole HTML document")
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "alert(\"x\")") {
		t.Errorf("the directory name reached the page unescaped")
	}
	// Nothing to fetch: no scripts, stylesheets, images or frames. The
	// only URLs are the SVG namespace and the links to the sources.
	for _, bad := range []string{"<link", "<img", "<iframe", "src=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, u := range regexp.MustCompile(`https?://[^"'<> ]+`).FindAllString(page, -1) {
		if u != "http://www.w3.org/2000/svg" && !strings.Contains(page, `<a href="`+u+`">`) {
			t.Errorf("URL %s is neither the SVG namespace nor a source link", u)
		}
	}
	// One histogram per workload, with bars and the check's lines.
	if n := strings.Count(page, "<svg "); n != len(rep.Workloads) {
		t.Errorf("%d charts for %d workloads", n, len(rep.Workloads))
	}
	if !strings.Contains(page, `class="bar"`) || !strings.Contains(page, "pass line 10 ms") || !strings.Contains(page, "fail line 50 ms") {
		t.Errorf("chart lacks bars or threshold lines")
	}
	for _, v := range rep.Verdicts {
		if !strings.Contains(page, v.Summary) {
			t.Errorf("verdict %q missing", v.Summary)
		}
	}
	if !strings.Contains(page, "fio comparison") {
		t.Errorf("fio comparison missing")
	}
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	rep := sampleDiskReport()
	if err := bench.WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"ext4 on /dev/nvme0n1p2", "nvme0n1, partition nvme0n1p2 over sda, model Samsung PM9A3, non-rotational, write cache: write through",
		"/sys/fs/cgroup/io.max: 259:0 riops=1000",
		"etcd-wal", "12,345", "110µs", "2.00ms", "1,235",
		"PASS", "p99 2.00 ms is 5.0× under the 10 ms pass line", "https://www.ibm.com/",
		"6 readers at 30,000 IOPS", "3.5× the quiet p99",
		"fio --name=etcd", "p50", "+0.0%",
		"a device note", "a run note",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}

	b.Reset()
	if err := bench.WriteGitText(&b, sampleGitReport()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ssh://git@fjord:2222/team/app", "clone", "40", "4.0", "git clone --bare", "a note"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("git text report lacks %q:\n%s", want, b.String())
		}
	}
}
