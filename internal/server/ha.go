package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fjordhq/fjord/ha"
	"github.com/fjordhq/fjord/housekeeping"
	"github.com/fjordhq/fjord/reconciler"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// HAOptions makes the server one member of a replica group (--ha). Every
// zero duration takes package ha's default.
type HAOptions struct {
	// Namespace and Name name the leader Lease.
	Namespace, Name string
	// ID is this member's --replica-id; Advertise its SSH address as the
	// other members reach it.
	ID, Advertise string
	// KeyFile is the group key's private key (--ha-key), which members
	// use between themselves.
	KeyFile string
	// LeaseDuration, RenewDeadline and RetryPeriod are the election's.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// SyncReplicas is --sync-replicas; negative means 1 with two or more
	// members.
	SyncReplicas int
	// AckTimeout bounds a push's wait for its synchronous followers.
	AckTimeout time.Duration
	// PodNamespace and PodName name this member's Pod, labelled with its
	// role (POD_NAMESPACE, POD_NAME from the downward API).
	PodNamespace, PodName string
}

// openHA builds the elector. The primary's services (mirrors,
// Helm repositories, housekeeping that prunes, the reconciler, the admin
// keys) run only in its term; a follower housekeeps its copy without
// pruning (runFollower).
func (s *Server) openHA(reg prometheus.Registerer) error {
	o := s.opts.HA
	// Until elected, this member's store takes only what a primary
	// streams to it: a local write would diverge its change log.
	s.store.RefuseWrites(fmt.Errorf("this replica %s is not the primary (no primary elected yet)", o.ID))
	cfg, _, err := reconciler.LoadRESTConfig(s.opts.Kubeconfig)
	if errors.Is(err, reconciler.ErrNoCluster) {
		return errors.New("--ha needs the API server that holds its Leases: run in a Pod, or give --kubeconfig FILE or KUBECONFIG")
	}
	if err != nil {
		return fmt.Errorf("--ha: %w", err)
	}
	s.elector, err = ha.New(ha.Config{
		REST:          cfg,
		Namespace:     o.Namespace,
		Name:          o.Name,
		ID:            o.ID,
		Advertise:     o.Advertise,
		LeaseDuration: o.LeaseDuration,
		RenewDeadline: o.RenewDeadline,
		RetryPeriod:   o.RetryPeriod,
		SyncReplicas:  o.SyncReplicas,
		AckTimeout:    o.AckTimeout,
		Position:      s.position,
		Replication:   s.replication(),
		PodNamespace:  o.PodNamespace,
		PodName:       o.PodName,
		OnPrimary:     s.runPrimary,
		OnFollow:      s.runFollower,
		RefuseWrites:  s.store.RefuseWrites,
		Logger:        s.log.With("ha", o.Namespace+"/"+o.Name, "replica", o.ID),
		Registerer:    reg,
	})
	return err
}

// runPrimary runs the services only the primary runs, for one term.
func (s *Server) runPrimary(ctx context.Context) {
	s.applyAdminKeys()
	var g errgroup.Group
	g.Go(func() error { return s.mirrors.Run(ctx) })
	g.Go(func() error { return s.charts.Run(ctx) })
	g.Go(func() error { return s.upkeep.Run(ctx, housekeeping.Primary) })
	g.Go(func() error { return s.notify.Run(ctx) })
	if s.rec != nil {
		g.Go(func() error { return s.rec.Run(ctx) })
	}
	if err := g.Wait(); err != nil {
		s.log.Error("primary services stopped", "err", err)
	}
}

// writeGuard refuses pushes on a member that is not the primary, then asks
// the mirrors (a mirror takes no pushes).
type writeGuard struct {
	e    *ha.Elector
	next interface {
		AllowPush(ctx context.Context, repo string) error
	}
}

func (g writeGuard) AllowPush(ctx context.Context, repo string) error {
	if err := g.e.Writable(); err != nil {
		return err
	}
	return g.next.AllowPush(ctx, repo)
}

// hooks serves the mirrors' webhooks. In a group only the primary runs
// mirror syncs, so another member answers 503 naming the primary rather
// than accept a trigger that nothing would ever run.
func (s *Server) hooks() http.Handler {
	h := s.mirrors.WebhookHandler()
	if s.elector == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.elector.Writable(); err != nil {
			http.Error(w, "webhook not taken: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// durability holds a push until the synchronous followers hold the
// store's position after it.
type durability struct{ s *Server }

func (d durability) WaitDurable(ctx context.Context, _ string) error {
	return d.s.elector.WaitDurable(ctx, d.s.position())
}

// readiness is what /readyz says beyond "ok" about this member's role;
// ok is false for a replica that has not caught up with a primary yet (a
// new member's empty copy must not serve reads).
func (s *Server) readiness() (msg string, ok bool) {
	if s.elector == nil {
		return "", true
	}
	if err := s.elector.Writable(); err != nil {
		msg = "role: replica\n" + strings.TrimPrefix(err.Error(), ha.ErrReadOnly.Error()+": ") + "\n"
		if !s.caughtUp.Load() {
			return msg + "catching up with the primary: not serving reads yet\n", false
		}
		return msg, true
	}
	s.caughtUp.Store(true) // a primary's copy is the group's
	if why := s.elector.SyncHealth(); why != "" {
		return "role: primary\n" + why + "\n", true
	}
	return "role: primary\n", true
}
