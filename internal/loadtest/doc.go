// Package loadtest puts the real `fjord serve` under concurrent fetch,
// clone and push load over loopback and reports the fast path's latency
// under load, peak RSS and goroutines, and any descriptor or goroutine
// left behind. `make load` runs 200 clients and 20 pushers for 60 s;
// `make test` a few seconds of a smaller load.
package loadtest
