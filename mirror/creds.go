package mirror

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gogitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Credential file names under DATA/credentials/KIND/REPO.
const (
	CredSSHKey        = "ssh_key"
	CredKnownHosts    = "known_hosts"
	CredToken         = "token"
	CredWebhookSecret = "webhook_secret"
)

// tokenUser is the HTTP basic-auth user sent with a token: GitHub wants
// x-access-token for app tokens and accepts anything for personal tokens,
// as GitLab does for personal and project tokens.
const tokenUser = "x-access-token"

// credentials are the secrets of one mirror or push mirror, read from its
// credential directory at each sync (so `fjord mirror add` replacing them
// takes effect without a restart).
type credentials struct {
	dir        string
	sshKey     string // path, if present
	knownHosts string // path, if present
	token      string // the token itself, if present
}

func loadCredentials(dir string) (credentials, error) {
	c := credentials{dir: dir}
	if p := filepath.Join(dir, CredSSHKey); exists(p) {
		c.sshKey = p
	}
	if p := filepath.Join(dir, CredKnownHosts); exists(p) {
		c.knownHosts = p
	}
	if p := filepath.Join(dir, CredToken); exists(p) {
		b, err := os.ReadFile(p)
		if err != nil {
			return c, fmt.Errorf("read token: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	return c, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// gitEnv returns the extra environment for a git fetch or push. Secrets
// travel only in the child's environment (readable by the same user only),
// never in argv, URLs or config files; GIT_CONFIG_COUNT keeps the token
// out of every config file.
func (c credentials) gitEnv(up Upstream) ([]string, error) {
	env := []string{"GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false"}
	switch up.Scheme {
	case "ssh":
		if c.knownHosts == "" {
			return nil, fmt.Errorf("an ssh upstream needs --known-hosts FILE with the upstream's host key (fjord never trusts a host key on first use); get one with `ssh-keyscan -p PORT HOST`")
		}
		cmd := "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + shellQuote(c.knownHosts)
		if c.sshKey != "" {
			cmd += " -o IdentitiesOnly=yes -i " + shellQuote(c.sshKey)
		}
		env = append(env, "GIT_SSH_COMMAND="+cmd)
	case "https", "http":
		if c.token != "" {
			basic := base64.StdEncoding.EncodeToString([]byte(tokenUser + ":" + c.token))
			env = append(env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Basic "+basic)
		}
	}
	return env, nil
}

// goGitAuth returns go-git's auth for listing refs in-process.
func (c credentials) goGitAuth(up Upstream) (transport.AuthMethod, error) {
	switch up.Scheme {
	case "ssh":
		if c.knownHosts == "" {
			return nil, fmt.Errorf("an ssh upstream needs --known-hosts FILE")
		}
		user := up.User
		if user == "" {
			user = "git"
		}
		hk, err := gogitssh.NewKnownHostsCallback(c.knownHosts)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		if c.sshKey == "" {
			return nil, fmt.Errorf("an ssh upstream needs --ssh-key FILE")
		}
		auth, err := gogitssh.NewPublicKeysFromFile(user, c.sshKey, "")
		if err != nil {
			return nil, fmt.Errorf("ssh key: %w", err)
		}
		auth.HostKeyCallback = hk
		return auth, nil
	case "https", "http":
		if c.token != "" {
			return &githttp.BasicAuth{Username: tokenUser, Password: c.token}, nil
		}
	}
	return nil, nil
}

// redact removes the token and URL userinfo from text bound for logs and
// errors.
func (c credentials) redact(s string) string {
	if c.token != "" {
		s = strings.ReplaceAll(s, c.token, "[token]")
		s = strings.ReplaceAll(s, base64.StdEncoding.EncodeToString([]byte(tokenUser+":"+c.token)), "[token]")
	}
	return Redact(s)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
