// Command fjord is the fjord appliance: an SSH Git server and mirror on local
// disk, a GitOps reconciler, and disk and Git benchmarks, in one binary.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}
