// Package securitytest is fjord's negative matrix: one table-driven test
// that drives the real `fjord serve` with everything it must refuse and
// checks that nothing on disk changed and that no credential the test used
// reaches a log line or an error.
package securitytest
