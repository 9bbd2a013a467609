package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// globals holds the flags every command shares.
type globals struct {
	dataDir string
}

// run builds the command tree and executes it, returning the process exit
// code. Signals are handled here and only here: SIGINT and SIGTERM cancel the
// context every command receives.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root := newRootCmd()
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "fjord: %v\n", err)
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "fjord",
		Short: "Git mirror, SSH Git server and GitOps reconciler on local disk",
		Long: `fjord keeps local copies of Git repositories on fast disk, serves them over
SSH to CI and GitOps tools, and applies Kustomize overlays to Kubernetes.

Every command finds the running server through the data directory
(--data, default ./data, or $FJORD_DATA).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defData := os.Getenv("FJORD_DATA")
	if defData == "" {
		defData = "./data"
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data", defData, "data directory (env FJORD_DATA)")

	root.AddCommand(
		newServeCmd(g),
		newRepoCmd(g),
		newUserCmd(g),
		newGrantCmd(g),
		newMirrorCmd(g),
		newPushMirrorCmd(g),
		newHelmRepoCmd(g),
		newAppCmd(g),
		newProjectCmd(g),
		newSignKeyCmd(g),
		newClusterCmd(g),
		newNotifyCmd(g),
		newHostkeyCmd(g),
		newReplicasCmd(g),
		newBackupCmd(g),
		newUICmd(g),
		newRestoreCmd(g),
		newVersionCmd(),
		newBenchCmd(),
	)
	strictGroups(root)
	root.SetFlagErrorFunc(flagError)
	return root
}
