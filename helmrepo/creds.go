package helmrepo

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Credential file names under DATA/credentials/helmrepo/NAME.
const (
	CredUsername = "username"
	CredPassword = "password"
)

// credentials are one repository's HTTP basic-auth secrets, read from its
// credential directory at each fetch, so `helmrepo add` replacing them
// takes effect without a restart.
type credentials struct {
	username, password string
}

func loadCredentials(dir string) (credentials, error) {
	var c credentials
	for name, dst := range map[string]*string{CredUsername: &c.username, CredPassword: &c.password} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return c, fmt.Errorf("read %s: %w", name, err)
		}
		*dst = strings.TrimRight(string(b), "\r\n")
	}
	return c, nil
}

func (c credentials) empty() bool { return c.username == "" && c.password == "" }

// redact removes the password (and its basic-auth encoding) from text bound
// for logs, errors and the stored status.
func (c credentials) redact(s string) string {
	if c.password == "" {
		return s
	}
	s = strings.ReplaceAll(s, c.password, "[password]")
	return strings.ReplaceAll(s, base64.StdEncoding.EncodeToString([]byte(c.username+":"+c.password)), "[password]")
}

// redactErr is redact for an error, keeping errors.Is working for the
// sentinels callers branch on.
func (c credentials) redactErr(err error) error {
	if err == nil || c.password == "" || !strings.Contains(err.Error(), c.password) && !strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte(c.username+":"+c.password))) {
		return err
	}
	return &redactedError{msg: c.redact(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Is matches the sentinels of the wrapped error without exposing its text
// through Unwrap.
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
