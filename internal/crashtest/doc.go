// Package crashtest holds fjord's crash trials: `kill -9` of the real
// `fjord serve` binary at random moments during pushes, mirror syncs, app
// syncs with prune and admin writes, each followed by a restart and the
// checks that no acknowledged write was lost and nothing was left
// inconsistent. `make crash` runs 100 trials per kind; `make test` a few.
package crashtest
