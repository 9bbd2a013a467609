package replication

import (
	"encoding/json"

	"github.com/fjordhq/fjord/storage"
)

// Message types the primary sends.
const (
	msgSnapshot = "snapshot"
	msgChange   = "change"
	msgPing     = "ping"
)

// message is one line the primary writes to a follower.
type message struct {
	Type string `json:"type"`
	// Change is the change exactly as the primary's log stores it.
	Change json.RawMessage `json:"change,omitempty"`
	// Files are the current contents of the files Change writes
	// (credentials, kept chart archives), keyed as storage's ChangeFiles
	// keys them: the log records only that they changed, so no secret
	// and no archive stays in it.
	Files map[string][]byte `json:"files,omitempty"`
	// Packs are the packs Change brought, with their indexes, when they
	// are small enough to send (storage.Store.ChangePacks): the follower
	// installs them instead of fetching with git.
	Packs []storage.Pack `json:"packs,omitempty"`
	// Snapshot is a full copy, for msgSnapshot.
	Snapshot *storage.Snapshot `json:"snapshot,omitempty"`
	// Pos is the primary's position, on every message.
	Pos uint64 `json:"pos"`
}

// ack is one line a follower writes to its primary: it holds Pos, durably.
type ack struct {
	Ack uint64 `json:"ack"`
}
