package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile reads deploy/Dockerfile into stages of instructions.
// It is a checker's parser, not BuildKit's: comments, continuations and
// instructions, which is all this Dockerfile uses.
func parseDockerfile(t testing.TB) [][]instruction {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]instruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("deploy/Dockerfile: %s before the first FROM", in.cmd)
			}
			return
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

func stageArgs(stage []instruction, cmd string) []string {
	var out []string
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// TestDockerfile checks deploy/Dockerfile without a Docker engine: a build
// stage that makes a static binary, a runtime stage with git that runs as
// a non-root user and listens on all interfaces.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("deploy/Dockerfile has %d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	from := regexp.MustCompile(`(?i)^\S+\s+AS\s+(\S+)$`).FindStringSubmatch(build[0].args)
	if from == nil {
		t.Fatalf("the build stage FROM %q is not named (FROM image AS name)", build[0].args)
	}
	buildRuns := strings.Join(stageArgs(build, "RUN"), "\n")
	if !regexp.MustCompile(`CGO_ENABLED=0\s+go build\b.*\./cmd/fjord`).MatchString(buildRuns) {
		t.Errorf("the build stage does not run CGO_ENABLED=0 go build ... ./cmd/fjord:\n%s", buildRuns)
	}
	if !slices.ContainsFunc(stageArgs(final, "COPY"), func(a string) bool {
		return strings.HasPrefix(a, "--from="+from[1]+" ") && strings.HasSuffix(a, " /usr/local/bin/fjord")
	}) {
		t.Errorf("the runtime stage does not COPY --from=%s the binary to /usr/local/bin/fjord", from[1])
	}
	if strings.Contains(final[0].args, "golang") {
		t.Errorf("the runtime stage is FROM %s: the Go toolchain has no place in it", final[0].args)
	}

	runs := strings.Join(stageArgs(final, "RUN"), "\n")
	if !regexp.MustCompile(`apt-get install\b[^\n]*\sgit(\s|$)`).MatchString(runs) {
		t.Errorf("the runtime stage does not install git:\n%s", runs)
	}
	if !strings.Contains(runs, "rm -rf /var/lib/apt/lists") {
		t.Error("the runtime stage keeps apt's package lists in the image")
	}

	users := stageArgs(final, "USER")
	if len(users) == 0 {
		t.Fatal("the runtime stage sets no USER: it would run as root")
	}
	uid := dockerfileUID(t)
	if uid <= 0 {
		t.Errorf("the runtime stage runs as USER %s; want a numeric non-root uid, which runAsNonRoot can verify", users[len(users)-1])
	}

	entry := strings.Join(stageArgs(final, "ENTRYPOINT"), " ")
	cmd := strings.Join(stageArgs(final, "CMD"), " ")
	if !strings.Contains(entry, `"/usr/local/bin/fjord"`) {
		t.Errorf("ENTRYPOINT %s does not run /usr/local/bin/fjord", entry)
	}
	for _, want := range []string{`"serve"`, `"0.0.0.0:2222"`, `"0.0.0.0:8080"`} {
		if !strings.Contains(cmd, want) {
			t.Errorf("CMD %s lacks %s", cmd, want)
		}
	}
	if got := strings.Join(stageArgs(final, "EXPOSE"), " "); got != "2222 8080" {
		t.Errorf("EXPOSE %q, want 2222 8080", got)
	}
}

// dockerfileUID is the numeric uid of the runtime stage's last USER, -1
// if it is not numeric.
func dockerfileUID(t testing.TB) float64 {
	t.Helper()
	stages := parseDockerfile(t)
	users := stageArgs(stages[len(stages)-1], "USER")
	if len(users) == 0 {
		return -1
	}
	u, _, _ := strings.Cut(users[len(users)-1], ":")
	n, err := strconv.Atoi(u)
	if err != nil {
		return -1
	}
	return float64(n)
}
