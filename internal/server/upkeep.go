package server

import (
	"context"

	"github.com/fjordhq/fjord/housekeeping"
)

// Housekeep runs repo's housekeeping now, as the server would after its
// next change, and waits for it: `bench git --self` measures a repo in the
// state a running fjord keeps it, not one whose repack starts mid-run.
func (s *Server) Housekeep(ctx context.Context, repo string) (housekeeping.Result, error) {
	return s.upkeep.Housekeep(ctx, repo)
}
