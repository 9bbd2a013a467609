package storage

import "errors"

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
