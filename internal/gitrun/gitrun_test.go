package gitrun_test

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/fjordhq/fjord/internal/gitrun"
)

// A tool that exits while a child of its own (as gpg leaves gpg-agent)
// still holds its output pipe does not hold Wait: after WaitDelay the
// pipes are closed and the run ends.
func TestToolDoesNotWaitForAChildHoldingThePipe(t *testing.T) {
	r := gitrun.Runner{WaitDelay: 200 * time.Millisecond}
	cmd := r.Tool(context.Background(), "sh", "-c", "sleep 5 & echo started")
	out, err := cmd.Output()
	if !errors.Is(err, exec.ErrWaitDelay) || string(out) != "started\n" {
		t.Fatalf("Output = %q, %v; want the tool's output and exec.ErrWaitDelay", out, err)
	}
}
