// Package storage owns fjord's data directory: the bbolt metadata database
// (repos, users, public keys, grants, ref snapshots), the bare repositories
// under DATA/repos, the schema version, and the in-process ref-change
// notifications that tell the rest of fjord a repository moved.
//
// The layout of a data directory:
//
//	DATA/fjord.db                 bbolt metadata
//	DATA/repos/NAME.git           bare repositories
//	DATA/repos/.tmp/              repos being created or deleted (never served)
//	DATA/lost+found/              repo directories the database did not know at Open
//
// Every accepted change (a ref snapshot that moved, a metadata write) gets
// the next position of one ordered change log, written in the same bbolt
// transaction (changelog.go); replicas stream it, and a follower applies
// a change and stores it at the same position in one transaction
// (follow.go).
//
// storage knows nothing about SSH, HTTP or Kubernetes.
package storage
