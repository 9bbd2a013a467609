package gitserver

import (
	"context"
	"strconv"

	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// receivePack runs git receive-pack for a push. git keeps the incoming
// objects in a quarantine directory until every ref update is accepted, so
// a refused or broken push leaves the repo as it was. The ref snapshot is
// refreshed (and subscribers notified) before the exit status is sent, so
// when `git push` returns, every fetch already sees the new refs.
func (s *Server) receivePack(ctx context.Context, ch gossh.Channel, repo, gitProtocol string) error {
	flags := []string{
		"-c", "receive.maxInputSize=" + strconv.FormatInt(s.limits.MaxPushBytes, 10),
		"-c", "receive.hideRefs=" + storage.HiddenRefPrefix,
		"-c", "receive.advertiseAtomic=true",
	}
	runErr := s.proxyGit(ctx, ch, repo, gitProtocol, nil, "receive-pack", flags...)
	// Refresh even after a failure: with a non-atomic push some refs may
	// have been updated. Use a fresh context: the client hanging up must
	// not leave the snapshot stale.
	changes, err := s.store.RefreshRefs(context.WithoutCancel(ctx), repo)
	if err != nil {
		s.log.Error("refresh refs after push", "repo", repo, "err", err)
	}
	for _, c := range changes {
		s.log.Info("ref updated", "repo", repo, "ref", c.Ref, "old", c.Old, "new", c.New)
	}
	return runErr
}
