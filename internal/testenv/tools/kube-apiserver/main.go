// Command kube-apiserver is the Kubernetes API server of k8s.io/kubernetes
// v1.34, built from the Go module proxy so that fjord's reconciler tests can
// run against a real API server. It lives in its own module so the
// Kubernetes dependency graph never enters fjord's go.mod.
//
// Build it with `make testenv`; internal/testenv starts it.
package main

import (
	"os"
	_ "time/tzdata" // CronJob timeZone validation, as upstream's main has

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json, as upstream's main has
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
