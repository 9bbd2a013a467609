package storage

import (
	"errors"
	"fmt"
	"strconv"
)

// Errors returned by Store methods. Callers branch on them with errors.Is.
var (
	// ErrNotFound is returned when a repo, user or grant does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned when creating something whose name is taken.
	ErrExists = errors.New("already exists")
	// ErrInvalidName is returned for a repo or user name fjord refuses.
	ErrInvalidName = errors.New("invalid name")
	// ErrSchemaTooNew is returned by Open when the database was written by
	// a newer fjord than this one.
	ErrSchemaTooNew = errors.New("database schema is newer than this fjord supports")
	// ErrLocked is returned by Open when another process holds the database.
	ErrLocked = errors.New("data directory is in use by another fjord process")
)

// NotFoundError names the repo, user or mirror that does not exist, so
// that a caller allowed to list them (the admin API) can suggest the name
// that was probably meant. It matches ErrNotFound with errors.Is.
type NotFoundError struct {
	// Kind is "repo", "user" or "mirror".
	Kind string
	Name string
}

func (e *NotFoundError) Error() string { return e.Kind + " " + quote(e.Name) + ": not found" }

// Is makes errors.Is(err, ErrNotFound) hold.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// notFound wraps err as a NotFoundError when it is ErrNotFound, and names
// kind and name either way.
func notFound(kind, name string, err error) error {
	if err == ErrNotFound {
		return &NotFoundError{Kind: kind, Name: name}
	}
	return fmt.Errorf("%s %s: %w", kind, quote(name), err)
}

func quote(s string) string { return strconv.Quote(s) }
