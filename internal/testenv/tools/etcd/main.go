// Command etcd is etcd v3.6, built from the Go module proxy so that fjord's
// tests can run a real etcd under a real kube-apiserver without a download
// from outside the module proxy. It lives in its own module so etcd's
// dependency graph never enters fjord's go.mod.
//
// Build it with `make testenv`; internal/testenv starts it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
