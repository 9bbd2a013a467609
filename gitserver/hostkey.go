package gitserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"
)

// LoadOrCreateHostKey reads the ed25519 host key at path (OpenSSH format),
// generating and writing it (0600) on first start. The key is written to a
// temp file and renamed, so a crash never leaves a truncated key that would
// change the server's identity.
func LoadOrCreateHostKey(path string) (gossh.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		signer, err := gossh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("host key %s: %w (restore it from backup; deleting it changes the server's identity and every client's known_hosts breaks)", path, err)
		}
		return signer, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "fjord host key")
	if err != nil {
		return nil, fmt.Errorf("encode host key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hostkey-")
	if err != nil {
		return nil, fmt.Errorf("write host key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write host key: %w", err)
	}
	if _, err := tmp.Write(pem.EncodeToMemory(block)); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write host key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write host key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write host key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("write host key: %w", err)
	}
	return gossh.NewSignerFromKey(priv)
}

// LoadHostKey reads an existing host key (OpenSSH format), such as one
// mounted from a Kubernetes Secret. Unlike LoadOrCreateHostKey it never
// generates one: a missing file given on purpose is an error.
func LoadHostKey(path string) (gossh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	signer, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w (it must be an unencrypted private key in OpenSSH or PEM format, e.g. from ssh-keygen -t ed25519 -N '')", path, err)
	}
	return signer, nil
}

// KnownHostsLine returns the line clients put in known_hosts for a server
// reachable at host:port: "[host]:port ssh-ed25519 AAAA...", or without
// brackets for port 22, as OpenSSH writes it.
func KnownHostsLine(host string, port int, key gossh.PublicKey) string {
	addr := host
	if port != 22 {
		addr = fmt.Sprintf("[%s]:%d", host, port)
	}
	return addr + " " + string(gossh.MarshalAuthorizedKey(key)[:len(gossh.MarshalAuthorizedKey(key))-1])
}
