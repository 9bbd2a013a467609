package server

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/fjordhq/fjord/ha"
	"github.com/fjordhq/fjord/housekeeping"
	"github.com/fjordhq/fjord/replication"
	gossh "golang.org/x/crypto/ssh"
)

// openReplication loads the group key and builds the primary's side of
// the change stream, which the SSH server serves to peers proving the
// group key. Every member has one: it streams whatever its store's log
// holds, so it keeps working for a follower promoted to primary.
func (s *Server) openReplication(hostKey gossh.Signer) (gossh.PublicKey, error) {
	pem, err := os.ReadFile(s.opts.HA.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("--ha-key: %w", err)
	}
	signer, err := gossh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("--ha-key %s: %w (give an unencrypted OpenSSH private key: ssh-keygen -t ed25519 -N '')", s.opts.HA.KeyFile, err)
	}
	s.groupKey, s.hostPub = signer, hostKey.PublicKey()
	s.primary = replication.NewPrimary(s.store, s.log)
	return signer.PublicKey(), nil
}

// position is the store's replication position.
func (s *Server) position() uint64 { return s.store.Position() }

// replication is the primary's change stream as the elector sees it.
func (s *Server) replication() ha.Replication { return streamView{s.primary} }

type streamView struct{ p *replication.Primary }

func (v streamView) WaitAcked(ctx context.Context, pos uint64, n int) error {
	return v.p.WaitAcked(ctx, pos, n)
}

func (v streamView) Followers() []ha.Follower {
	fs := v.p.Followers()
	out := make([]ha.Follower, len(fs))
	for i, f := range fs {
		out[i] = ha.Follower{ID: f.ID, Connected: f.Connected, Acked: f.Acked,
			Lag: time.Duration(f.LagSeconds * float64(time.Second)), LastContact: f.LastContact}
	}
	return out
}

// runFollower follows primary p until ctx ends: it streams p's change log
// into this member's store, and housekeeps the repos as their changes
// arrive, in Follower mode (nothing pruned, nothing written to the store),
// so the packs it installs one per push are folded together as the
// primary's are. Both have stopped when it returns: the elector starts
// the primary's services only after that.
func (s *Server) runFollower(ctx context.Context, p ha.Primary) {
	f := replication.NewFollower(s.store, replication.FollowerOptions{
		ID:      s.opts.HA.ID,
		Primary: p.Advertise,
		KeyFile: s.opts.HA.KeyFile,
		Signer:  s.groupKey,
		HostKey: s.hostPub,
		Logger:  s.log,
		Git:     s.opts.Git,
		Metrics: s.followerMetrics,
	})
	var wg sync.WaitGroup
	wg.Go(func() { s.watchCatchUp(ctx, f) })
	uctx, stopUpkeep := context.WithCancel(ctx)
	wg.Go(func() {
		if err := s.upkeep.Run(uctx, housekeeping.Follower); err != nil {
			s.log.Error("housekeeping stopped", "err", err)
		}
	})
	if err := f.Run(ctx); err != nil {
		s.log.Error("cannot follow the primary", "primary", p.ID, "address", p.Advertise, "err", err)
	}
	stopUpkeep()
	wg.Wait()
}

// watchCatchUp marks the member caught up (ready to serve reads) once its
// stream is connected and it holds what the primary said it holds. A new
// member stays out of fjord-ro until then; one that was caught up once
// keeps serving (stale beats nothing while the primary is away).
func (s *Server) watchCatchUp(ctx context.Context, f *replication.Follower) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !s.caughtUp.Load() {
		st := f.State()
		if st.Connected && st.Position >= st.PrimaryPosition {
			s.caughtUp.Store(true)
			s.log.Info("caught up with the primary: serving reads", "position", st.Position)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
