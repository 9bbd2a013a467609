package gitserver

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// receivePack runs git receive-pack for a push. git keeps the incoming
// objects in a quarantine directory until every ref update is accepted, so
// a refused or broken push leaves the repo as it was.
//
// The ref snapshot is refreshed (and subscribers notified) before the
// client can see the push complete. The git CLI waits for the exit status,
// but go-git returns as soon as it has read the report-status, whose last
// packet is a flush; so after the advertisement fjord holds back the last
// four bytes git writes until the refresh is done. With a Durability (a
// replica group) the whole report is held until the synchronous followers
// hold the change; when they do not, the client is refused instead.
func (s *Server) receivePack(ctx context.Context, ch gossh.Channel, repo, gitProtocol string) error {
	// Housekeeping does not rewrite the repo's packs while a push runs.
	defer s.store.BeginRepoWrite(repo)()
	cmd := s.command(ctx, ch, gitProtocol,
		"-c", "receive.maxInputSize="+strconv.FormatInt(s.limits.MaxPushBytes, 10),
		"-c", "receive.hideRefs="+storage.HiddenRefPrefix,
		"-c", "receive.advertiseAtomic=true",
		// Every push kept as the pack it came in (as housekeeping sets
		// too): no loose objects, and the pack is what followers are sent.
		"-c", "receive.unpackLimit=1",
		"receive-pack", s.store.RepoPath(repo))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start git receive-pack for %s: %w", repo, err)
	}
	go feed(stdin, nil, ch)
	tail := &tailWriter{w: ch, all: s.durable != nil}
	copyErr := copyAdvertisement(ch, stdout)
	if copyErr == nil {
		_, copyErr = io.Copy(tail, stdout)
	}
	runErr := cmd.Wait()

	// Refresh even after a failure: with a non-atomic push some refs may
	// have been updated. The client hanging up must not leave the snapshot
	// stale, hence a context that is not cancelled with the session.
	changes, err := s.store.RefreshRefs(context.WithoutCancel(ctx), repo)
	if err != nil {
		s.log.Error("refresh refs after push", "repo", repo, "err", err)
	}
	for _, c := range changes {
		s.log.Info("ref updated", "repo", repo, "ref", c.Ref, "old", c.Old, "new", c.New)
	}
	if s.durable != nil && len(changes) > 0 {
		if err := s.durable.WaitDurable(ctx, repo); err != nil {
			return refusal("not-durable", "push to %s %v", repo, err)
		}
	}
	if err := tail.release(); err != nil && copyErr == nil {
		copyErr = err
	}
	if runErr != nil {
		return fmt.Errorf("git receive-pack %s: %w", repo, runErr)
	}
	if copyErr != nil {
		return fmt.Errorf("send push result: %w", copyErr)
	}
	return nil
}

// copyAdvertisement forwards git's pkt-lines to the client up to and
// including the first flush.
func copyAdvertisement(w io.Writer, r io.Reader) error {
	pr := pktReader{r: r}
	for {
		p, err := pr.next()
		if err == io.EOF {
			return nil // git exited without advertising (it said why on stderr)
		}
		if err != nil {
			return fmt.Errorf("read git's advertisement: %w", err)
		}
		if _, err := w.Write(p.raw); err != nil {
			return err
		}
		if p.isFlush() {
			return nil
		}
	}
}

// tailWriter passes writes through but always keeps the last four bytes
// back until release; with all set it keeps everything back.
type tailWriter struct {
	w    io.Writer
	all  bool
	held []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	buf := append(t.held, p...)
	if t.all {
		t.held = buf
		return len(p), nil
	}
	if len(buf) <= 4 {
		t.held = buf
		return len(p), nil
	}
	cut := len(buf) - 4
	if _, err := t.w.Write(buf[:cut]); err != nil {
		return 0, err
	}
	t.held = append([]byte(nil), buf[cut:]...)
	return len(p), nil
}

func (t *tailWriter) release() error {
	if len(t.held) == 0 {
		return nil
	}
	_, err := t.w.Write(t.held)
	t.held = nil
	return err
}
