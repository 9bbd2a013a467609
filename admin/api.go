package admin

import "github.com/fjordhq/fjord/storage"

// SocketName is the socket's file name inside the data directory.
const SocketName = "fjord.sock"

// Info describes the running server.
type Info struct {
	Version string `json:"version"`
	DataDir string `json:"dataDir"`
	// SSHAddr is the address the SSH server listens on.
	SSHAddr string `json:"sshAddr"`
	// HTTPAddr is the address of /healthz, /readyz, /metrics.
	HTTPAddr string `json:"httpAddr"`
	// HostKey is the SSH host public key in authorized_keys format.
	HostKey string `json:"hostKey"`
	// HostKeyFingerprint is its SHA256 fingerprint.
	HostKeyFingerprint string `json:"hostKeyFingerprint"`
}

// CreateRepoRequest is the body of POST /v1/repos.
type CreateRepoRequest struct {
	Name        string `json:"name"`
	AnonRead    bool   `json:"anonRead"`
	Description string `json:"description,omitempty"`
}

// UpdateRepoRequest is the body of PATCH /v1/repos/NAME; nil fields are
// left as they are.
type UpdateRepoRequest struct {
	AnonRead    *bool   `json:"anonRead,omitempty"`
	Description *string `json:"description,omitempty"`
}

// CreateUserRequest is the body of POST /v1/users.
type CreateUserRequest struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin"`
	// Keys are public keys in authorized_keys format.
	Keys []string `json:"keys"`
}

// RepoStatus is a repo with its current refs, as `fjord repo list` shows it.
type RepoStatus struct {
	storage.Repo
	Head     string `json:"head,omitempty"`
	HeadHash string `json:"headHash,omitempty"`
	Refs     int    `json:"refs"`
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error string `json:"error"`
}
