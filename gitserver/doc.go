// Package gitserver serves fjord's repositories over SSH to git, go-git,
// Argo CD and Flux.
//
// Authentication is by public key only, against the users and keys in
// storage; authorization is per repo (read, write, admin). The git protocol
// is served by the installed git binary (upload-pack, receive-pack,
// upload-archive), except for the question co-located clients ask most —
// "which refs do you have?" — which is answered from storage's in-memory
// ref snapshot without starting a process: the v0 ref advertisement, and
// the v2 capability advertisement and ls-refs. git runs only when a pack
// must be negotiated, sent or received; for protocol v2 each fetch command
// runs one `git upload-pack --stateless-rpc`, as git-http-backend does.
//
// A replica group's peers authenticate with the group key
// (Config.PeerKey), which is no user's: they may run the replication
// stream (ReplicateCommand, served by Config.Replicator) and an
// upload-pack of any repo that sees hidden refs and serves any object
// asked for by name, and nothing else (replicate.go).
//
// Everything else an SSH server can do is refused: shells, ptys, port and
// agent forwarding, environment variables other than GIT_PROTOCOL.
package gitserver
