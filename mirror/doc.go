// Package mirror keeps pull mirrors of upstream repositories in sync:
// scheduled with jitter and bounded concurrency, triggered by webhooks and
// by hand, one sync per mirror at a time with at most one queued behind
// it, exponential backoff on failure. Every sync first asks the upstream
// for its refs in-process and fetches only when they changed; refs move in
// one atomic transaction, and tips an upstream force-push or deletion
// would lose are kept under refs/fjord/backup/ (history protection).
//
// It also runs push mirrors: hosted repos copied to a remote after every
// accepted push.
package mirror
