package gitserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/anmitsu/go-shlex"
	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// ReplicateCommand is the exec command a follower runs on its primary to
// read the change stream; its arguments are the Replicator's.
const ReplicateCommand = "fjord-replicate"

// extPeer marks a connection authenticated with the replica group's key.
const extPeer = "fjord-peer"

// Replicator serves the replication stream to a peer replica: it reads
// the follower's acks from stream and writes changes to it until ctx ends
// or the follower goes away. args are the exec command's arguments after
// ReplicateCommand; an error whose text is for the follower should say
// what is wrong with them.
type Replicator interface {
	ServeReplica(ctx context.Context, remote string, args []string, stream io.ReadWriter) error
}

// isPeerKey reports whether key is the replica group's key.
func (s *Server) isPeerKey(key gossh.PublicKey) bool {
	return s.peerKey != nil && bytes.Equal(key.Marshal(), s.peerKey.Marshal())
}

// isPeer reports whether a connection proved it holds the group key.
func isPeer(p peer) bool {
	if p.perms == nil {
		return false
	}
	_, ok := p.perms.Extensions[extPeer]
	return ok
}

// execPeer runs a peer replica's command: the change stream, or an
// upload-pack of any repo that sees every ref, hidden ones too, and
// serves any object asked for (a follower fetches by object name). A peer
// is no user: it may not push, nor run anything else.
func (s *Server) execPeer(ctx context.Context, p peer, ch gossh.Channel, cmdline, gitProtocol string) int {
	start := time.Now()
	attrs := []slog.Attr{slog.String("remote", p.remote), slog.String("user", "replica"), slog.String("login", p.login)}
	err := s.servePeer(ctx, p, ch, cmdline, gitProtocol)
	attrs = append(attrs, slog.String("command", cmdline), slog.Duration("duration", time.Since(start)))
	var ce *clientError
	switch {
	case err == nil:
		s.log.LogAttrs(ctx, slog.LevelDebug, "replica command served", attrs...)
		return 0
	case errors.As(err, &ce):
		s.metrics.refused.WithLabelValues(ce.reason).Inc()
		s.log.LogAttrs(ctx, slog.LevelWarn, "refused: "+ce.msg, attrs...)
		fmt.Fprintf(ch.Stderr(), "fjord: %s\n", ce.msg)
		return 1
	case errors.Is(err, context.Canceled) || errors.Is(err, io.EOF):
		s.log.LogAttrs(ctx, slog.LevelInfo, "replica disconnected", attrs...)
		return 0
	default:
		s.log.LogAttrs(ctx, slog.LevelError, "replica command failed", append(attrs, slog.Any("err", err))...)
		fmt.Fprintf(ch.Stderr(), "fjord: %v\n", err)
		return 1
	}
}

func (s *Server) servePeer(ctx context.Context, p peer, ch gossh.Channel, cmdline, gitProtocol string) error {
	if len(cmdline) > maxCommandLen {
		return refusal("command", "command longer than %d bytes", maxCommandLen)
	}
	args, err := shlex.Split(cmdline, true)
	if err != nil || len(args) == 0 {
		return refusal("command", "cannot parse command %q", cmdline)
	}
	switch args[0] {
	case ReplicateCommand:
		if s.replicator == nil {
			return refusal("replication", "this server does not serve the replication stream (it runs without --ha)")
		}
		return s.replicator.ServeReplica(ctx, p.remote, args[1:], ch)
	case string(serviceUploadPack):
		if len(args) != 2 {
			return refusal("command", "%s takes exactly one argument, the repo path", args[0])
		}
		repo, err := storage.NormalizeRepoName(args[1])
		if err != nil {
			return refusal("path", "%v", err)
		}
		if _, err := s.store.Repo(repo); err != nil {
			return refusal("not-found", "repo %q does not exist on this replica", repo)
		}
		return s.peerUploadPack(ctx, ch, repo, gitProtocol)
	}
	return refusal("command", "the replica group key runs only %s and git-upload-pack, not %s", ReplicateCommand, strings.Fields(cmdline)[0])
}

// peerUploadPack runs a follower's fetch. Unlike a client's, it is not
// deprioritized: a push with synchronous replicas waits for it.
func (s *Server) peerUploadPack(ctx context.Context, ch gossh.Channel, repo, gitProtocol string) error {
	cmd := s.command(ctx, ch, gitProtocol, "-c", "uploadpack.allowAnySHA1InWant=true", "-c", "uploadpack.allowFilter=true",
		"upload-pack", s.store.RepoPath(repo))
	cmd.Stdout = ch
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("upload-pack %s: %w", repo, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start git upload-pack for %s: %w", repo, err)
	}
	go feed(stdin, nil, ch)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git upload-pack %s: %w", repo, err)
	}
	return nil
}
