package gitserver

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/anmitsu/go-shlex"
)

// service is a git command a client may run.
type service string

// The only commands fjord runs for clients.
const (
	serviceUploadPack    service = "git-upload-pack"
	serviceReceivePack   service = "git-receive-pack"
	serviceUploadArchive service = "git-upload-archive"
)

// maxCommandLen bounds an exec request's command line: a service and a
// repo path, whose name is at most 128 characters, quoted, fit many times.
const maxCommandLen = 4096

// errCommandRefused is the error for anything but the three git services.
var errCommandRefused = errors.New("only git-upload-pack, git-receive-pack and git-upload-archive run on this server")

// parseCommand splits an exec request such as "git-upload-pack '/app.git'"
// into the service and the raw repo path. "git upload-pack PATH" (with a
// space, as some clients send) is accepted too; anything else, including
// extra arguments, is refused.
func parseCommand(cmdline string) (service, string, error) {
	// Before the lexer, whose cost grows with the square of the line: a
	// client could otherwise spend seconds of CPU per exec request.
	if len(cmdline) > maxCommandLen {
		return "", "", fmt.Errorf("command longer than %d bytes: a git command names one repo", maxCommandLen)
	}
	if svc, path, ok := parsePlainCommand(cmdline); ok {
		return svc, path, nil
	}
	args, err := shlex.Split(cmdline, true)
	if err != nil {
		return "", "", fmt.Errorf("cannot parse command: %w", err)
	}
	if len(args) >= 2 && args[0] == "git" {
		args = append([]string{"git-" + args[1]}, args[2:]...)
	}
	if len(args) == 0 {
		return "", "", errCommandRefused
	}
	svc := service(args[0])
	switch svc {
	case serviceUploadPack, serviceReceivePack, serviceUploadArchive:
	default:
		return "", "", errCommandRefused
	}
	if len(args) != 2 {
		return "", "", fmt.Errorf("%s takes exactly one argument, the repo path (got %d)", svc, len(args)-1)
	}
	return svc, args[1], nil
}

// parsePlainCommand parses, without the shell-word lexer, the form every
// git client sends: a service, one space and a path that is either
// single-quoted, not empty and without quotes inside ('app.git'), or
// plain (app.git). It
// gives what shlex would; anything else is left to it.
func parsePlainCommand(cmdline string) (service, string, bool) {
	name, arg, ok := strings.Cut(cmdline, " ")
	if !ok || !utf8.ValidString(arg) { // shlex turns invalid UTF-8 into U+FFFD
		return "", "", false
	}
	svc := service(name)
	switch svc {
	case serviceUploadPack, serviceReceivePack, serviceUploadArchive:
	default:
		return "", "", false
	}
	if len(arg) >= 3 && arg[0] == '\'' && arg[len(arg)-1] == '\'' && !strings.ContainsRune(arg[1:len(arg)-1], '\'') {
		return svc, arg[1 : len(arg)-1], true
	}
	if arg != "" && !strings.ContainsAny(arg, " \t\r\n'\"\\#;&|<>()$`*?[]{}~=%") {
		return svc, arg, true
	}
	return "", "", false
}

// protocolVersion returns the protocol version a GIT_PROTOCOL value asks
// for (0 when none is given).
func protocolVersion(gitProtocol string) int {
	v := 0
	for rest := gitProtocol; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, ":")
		switch kv {
		case "version=1":
			v = max(v, 1)
		case "version=2":
			v = 2
		}
	}
	return v
}
