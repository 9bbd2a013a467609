// Package replication streams a primary's change log to follower replicas
// and applies it there.
//
// The primary serves the stream over fjord's own SSH server to peers that
// authenticate with the replica group's key (gitserver.Config.PeerKey): a
// follower runs
//
//	fjord-replicate ID POSITION SUM
//
// naming itself, the position it holds and the checksum of the change at
// that position (storage.Store.PositionSum). The primary answers with JSON
// lines: a full copy ("snapshot") when the follower is new, too far behind
// for the change log, or holds a history the primary does not (a former
// primary's unacknowledged changes), then every change after it
// ("change"), and a "ping" with its position when idle. The follower
// answers each applied change with {"ack": POSITION} once it is durable:
// objects installed from the packs sent with the change (a push's own
// pack, when small) or else fetched with git over SSH with the group key,
// refs moved in one ref transaction, metadata and position written in one
// bbolt transaction.
//
// Primary.WaitAcked is what a push waits on before it is acknowledged
// (--sync-replicas); Primary.Followers is what `fjord replicas` shows.
// Roles, the Lease and fencing are the caller's (internal/server).
package replication
