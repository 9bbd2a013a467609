package bench_test

import (
	"html/template"
	"regexp"
	"strings"
	"testing"

	"github.com/fjordhq/fjord/bench"
)

// checkSelfContained checks that page is a whole HTML document that loads
// nothing, with one chart per workload and every verdict in it.
func checkSelfContained(t *testing.T, page string, charts int, verdicts []bench.Verdict) {
	t.Helper()
	if !strings.HasPrefix(page, "<!doctype html>") || !strings.HasSuffix(strings.TrimSpace(page), "</html>") {
		t.Errorf("not a whole HTML document")
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "alert(\"x\")") {
		t.Errorf("a name reached the page unescaped")
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
	if n := strings.Count(page, "<svg "); n != charts {
		t.Errorf("%d charts, want %d", n, charts)
	}
	if !strings.Contains(page, `class="bar"`) {
		t.Errorf("chart lacks bars")
	}
	for _, v := range verdicts {
		if !strings.Contains(page, template.HTMLEscapeString(v.Summary)) {
			t.Errorf("verdict %q missing", v.Summary)
		}
	}
}

func TestWriteHTMLIsSelfContained(t *testing.T) {
	rep := sampleDiskReport()
	rep.Dir = `/srv/<script>alert("x")</script>`
	var b strings.Builder
	if err := bench.WriteHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	checkSelfContained(t, page, len(rep.Workloads), rep.Verdicts)
	if !strings.Contains(page, "pass line 10 ms") || !strings.Contains(page, "fail line 50 ms") {
		t.Errorf("chart lacks the threshold lines")
	}
	if !strings.Contains(page, "fio comparison") || !strings.Contains(page, "a device note") || !strings.Contains(page, "a run note") {
		t.Errorf("fio comparison or notes missing")
	}
}

func TestWriteGitHTMLIsSelfContained(t *testing.T) {
	rep := sampleGitReport()
	rep.URL = `ssh://git@fjord/<script>alert("x")</script>`
	var b strings.Builder
	if err := bench.WriteGitHTML(&b, rep); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	checkSelfContained(t, page, len(rep.Workloads), rep.Verdicts)
	for _, want := range []string{"<h2>Repository</h2>", "2,345", "1.00 MiB", "starting the git and ssh client processes",
		"3.00ms at the median", "not comparable", "pass line 6 s", "fail line 60 s", "a note"} {
		if !strings.Contains(page, want) {
			t.Errorf("git HTML report lacks %q", want)
		}
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
	for _, want := range []string{"ssh://git@fjord:2222/team/app", "clone", "40", "4.0", "git clone --bare", "a note",
		"100 commits, 1 refs, 2,345 objects, 1.00 MiB", "it includes starting the git and ssh client", "(3.00ms at the median here", "not comparable",
		"FAIL", "clone errors", "1 of 41 operations failed", "PASS", "p99 2.00 ms is 3000× under the 6,000 ms pass line", "https://fluxcd.io/"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("git text report lacks %q:\n%s", want, b.String())
		}
	}
}
