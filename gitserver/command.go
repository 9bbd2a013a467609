package gitserver

import (
	"errors"
	"fmt"
	"strings"

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

// errCommandRefused is the error for anything but the three git services.
var errCommandRefused = errors.New("only git-upload-pack, git-receive-pack and git-upload-archive run on this server")

// parseCommand splits an exec request such as "git-upload-pack '/app.git'"
// into the service and the raw repo path. "git upload-pack PATH" (with a
// space, as some clients send) is accepted too; anything else, including
// extra arguments, is refused.
func parseCommand(cmdline string) (service, string, error) {
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

// protocolVersion returns the protocol version a GIT_PROTOCOL value asks
// for (0 when none is given).
func protocolVersion(gitProtocol string) int {
	v := 0
	for _, kv := range strings.Split(gitProtocol, ":") {
		switch kv {
		case "version=1":
			v = max(v, 1)
		case "version=2":
			v = 2
		}
	}
	return v
}
