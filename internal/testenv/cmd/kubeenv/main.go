// Command kubeenv runs the real kube-apiserver and etcd of internal/testenv
// outside a test, for `make demo` (deploy/demo/demo.sh) and for trying
// fjord's reconciler by hand.
//
//	kubeenv [-kubeconfig-out FILE] [-dir DIR] [-timeout 2m]
//
// It starts etcd and kube-apiserver on free loopback ports, waits until the
// API server is ready, and then writes the path of an admin kubeconfig to
// FILE (atomically, so a script polling for FILE never reads half a path)
// or, without -kubeconfig-out, to stdout. It runs until SIGINT or SIGTERM,
// then stops both processes and removes their temporary directory, the
// kubeconfig included; FILE itself is the caller's to remove.
//
// The binaries come from `make testenv` (or $FJORD_KUBE_APISERVER and
// $FJORD_ETCD). On Linux they die with kubeenv even when it is killed with
// SIGKILL, so nothing is left holding ports.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fjordhq/fjord/internal/testenv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "kubeenv: %v\n", err)
		os.Exit(1)
	}
}

// run parses args, starts the environment, publishes the kubeconfig path,
// waits for a signal and stops the environment.
func run(args []string) error {
	fs := flag.NewFlagSet("kubeenv", flag.ContinueOnError)
	out := fs.String("kubeconfig-out", "", "file to write the kubeconfig's path to once the API server is ready (default: stdout)")
	dir := fs.String("dir", "", "directory to make the environment's temporary directory in (default: $TMPDIR)")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long etcd and kube-apiserver may take to become ready")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	// Listen before starting, so that a Ctrl-C during the start (which
	// takes seconds) stops the start and still cleans up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	env, err := testenv.Start(ctx, testenv.Options{Dir: *dir, StartTimeout: *timeout})
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted while starting")
		}
		return err
	}
	// From here on, every return path must stop env.
	stopErr := func() error {
		if err := env.Stop(); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		return nil
	}

	if err := publish(*out, env.Kubeconfig()); err != nil {
		return errors.Join(err, stopErr())
	}
	fmt.Fprintf(os.Stderr, "kubeenv: kube-apiserver ready at %s (etcd %s, kube-apiserver %s); Ctrl-C or SIGTERM stops it\n",
		env.URL(), testenv.EtcdVersion, testenv.KubernetesVersion)

	<-ctx.Done()
	stop() // a second Ctrl-C now kills kubeenv; Pdeathsig takes the children along
	if err := stopErr(); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "kubeenv: stopped")
	return nil
}

// publish writes the kubeconfig path, followed by a newline, to out, or to
// stdout when out is empty. A file is written under a temporary name and
// renamed, so whoever waits for it to appear reads the whole line.
func publish(out, kubeconfig string) error {
	line := kubeconfig + "\n"
	if out == "" {
		if _, err := os.Stdout.WriteString(line); err != nil {
			return fmt.Errorf("write kubeconfig path to stdout: %w", err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("-kubeconfig-out: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.WriteString(line); err != nil {
		tmp.Close()
		return fmt.Errorf("-kubeconfig-out: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("-kubeconfig-out: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("-kubeconfig-out: %w", err)
	}
	return nil
}
