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
// storage knows nothing about SSH, HTTP or Kubernetes.
package storage
