// Package admin is the API between `fjord serve` and the fjord CLI: JSON
// over HTTP on a unix socket, DATA/fjord.sock, readable only by the user
// running the server. The file mode is the authentication, as for
// Docker's socket: whoever can open it administers this fjord.
package admin
