package server

import (
	"context"

	"github.com/fjordhq/fjord/ha"
)

// position is the store's replication position.
func (s *Server) position() uint64 { return 0 }

// replication is the primary's change stream as the elector sees it.
func (s *Server) replication() ha.Replication { return nil }

// runFollower follows primary p until ctx ends.
func (s *Server) runFollower(ctx context.Context, p ha.Primary) {
	<-ctx.Done()
}
