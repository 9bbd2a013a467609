package server

import (
	"context"

	"github.com/fjordhq/fjord/housekeeping"
)

// Housekeep runs repo's housekeeping now, as the server would after its
// next change, and waits for it: `bench git --self` measures a repo in the
// state a running fjord keeps it, not one whose repack starts mid-run. A
// group member that is not the primary housekeeps as a follower does,
// pruning nothing.
func (s *Server) Housekeep(ctx context.Context, repo string) (housekeeping.Result, error) {
	mode := housekeeping.Primary
	if s.elector != nil && s.elector.Writable() != nil {
		mode = housekeeping.Follower
	}
	return s.upkeep.Housekeep(ctx, repo, mode)
}
