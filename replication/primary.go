package replication

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/fjordhq/fjord/gitserver"
	"github.com/fjordhq/fjord/storage"
)

// PingInterval is how often an idle stream tells the follower the
// primary's position, which also keeps the SSH connection from idling out.
const PingInterval = 2 * time.Second

// batchSize is how many changes the primary reads from its log at once.
const batchSize = 256

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// FollowerStatus is what the primary knows of one follower.
type FollowerStatus struct {
	// ID is the follower's --replica-id.
	ID string `json:"id"`
	// Remote is the address it connects from.
	Remote string `json:"remote"`
	// Connected is whether its stream is open now.
	Connected bool `json:"connected"`
	// Acked is the newest position it holds durably.
	Acked uint64 `json:"acked"`
	// LagChanges is how many changes it lacks.
	LagChanges uint64 `json:"lagChanges"`
	// LagSeconds is how old the oldest change it lacks is; 0 when it
	// lacks none.
	LagSeconds float64 `json:"lagSeconds"`
	// LastContact is when it last acked or was sent anything.
	LastContact time.Time `json:"lastContact"`
	// FullCopies counts the full copies it was sent.
	FullCopies int `json:"fullCopies"`
}

// Primary serves the change log of a store to followers and tracks their
// acks. One Primary per process is enough: it streams whatever the store's
// log holds, so it keeps working, unchanged, for a follower promoted to
// primary. It implements gitserver.Replicator.
type Primary struct {
	store *storage.Store
	log   *slog.Logger

	mu        sync.Mutex
	followers map[string]*followerState
	wake      chan struct{} // closed and replaced on every ack
}

type followerState struct {
	status FollowerStatus
	gen    int // which connection of the follower is current
}

var _ gitserver.Replicator = (*Primary)(nil)

// NewPrimary returns a Primary for store. log nil means slog.Default().
func NewPrimary(store *storage.Store, log *slog.Logger) *Primary {
	if log == nil {
		log = slog.Default()
	}
	return &Primary{store: store, log: log, followers: map[string]*followerState{}, wake: make(chan struct{})}
}

// WaitAcked blocks until n followers hold pos durably, or ctx ends (then
// it returns ctx's error, naming how many did). n <= 0 returns at once.
func (p *Primary) WaitAcked(ctx context.Context, pos uint64, n int) error {
	for {
		p.mu.Lock()
		have := 0
		for _, f := range p.followers {
			if f.status.Acked >= pos {
				have++
			}
		}
		wake := p.wake
		p.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("replication: %d of %d followers hold position %d: %w", have, n, pos, ctx.Err())
		}
	}
}

// Followers returns what the primary knows of every follower that ever
// connected since it started, sorted by ID.
func (p *Primary) Followers() []FollowerStatus {
	cur := p.store.Position()
	p.mu.Lock()
	out := make([]FollowerStatus, 0, len(p.followers))
	for _, f := range p.followers {
		out = append(out, f.status)
	}
	p.mu.Unlock()
	for i := range out {
		f := &out[i]
		if f.Acked >= cur {
			continue
		}
		f.LagChanges = cur - f.Acked
		if next, err := p.store.ChangesSince(f.Acked, 1); err == nil && len(next) > 0 {
			f.LagSeconds = time.Since(next[0].Time).Seconds()
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// connect registers a follower's new stream and returns its generation.
func (p *Primary) connect(id, remote string, acked uint64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.followers[id]
	if f == nil {
		f = &followerState{status: FollowerStatus{ID: id}}
		p.followers[id] = f
	}
	f.gen++
	f.status.Remote, f.status.Connected, f.status.LastContact = remote, true, time.Now()
	f.status.Acked = acked
	p.broadcast()
	return f.gen
}

func (p *Primary) disconnect(id string, gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.followers[id]; f != nil && f.gen == gen {
		f.status.Connected = false
	}
}

func (p *Primary) update(id string, gen int, fn func(*FollowerStatus)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.followers[id]; f != nil && f.gen == gen {
		fn(&f.status)
		f.status.LastContact = time.Now()
		p.broadcast()
	}
}

// broadcast wakes WaitAcked; p.mu is held.
func (p *Primary) broadcast() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// ServeReplica serves one follower's stream: args are its ID, the
// position it holds and the Sum of the change there ("-" for none).
func (p *Primary) ServeReplica(ctx context.Context, remote string, args []string, stream io.ReadWriter) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: %s ID POSITION SUM (got %d arguments)", gitserver.ReplicateCommand, len(args))
	}
	id := args[0]
	if !validID.MatchString(id) {
		return fmt.Errorf("replica id %q: use letters, digits, '.', '_' and '-', at most 63", id)
	}
	var pos uint64
	if _, err := fmt.Sscan(args[1], &pos); err != nil {
		return fmt.Errorf("position %q: %w", args[1], err)
	}
	sum := args[2]
	if sum == "-" {
		sum = ""
	}
	full := !p.holds(pos, sum)
	acked := pos
	if full {
		acked = 0
	}
	gen := p.connect(id, remote, acked)
	defer p.disconnect(id, gen)
	p.log.Info("replica connected", "replica", id, "remote", remote, "position", pos, "full_copy", full)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		dec := json.NewDecoder(bufio.NewReader(stream))
		for {
			var a ack
			if err := dec.Decode(&a); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.EOF
				}
				cancel(fmt.Errorf("read acks of replica %s: %w", id, err))
				return
			}
			p.update(id, gen, func(st *FollowerStatus) {
				if a.Ack > st.Acked {
					st.Acked = a.Ack
				}
			})
		}
	}()

	w := bufio.NewWriter(stream)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // changes go out byte for byte as stored
	send := func(m message) error {
		if err := enc.Encode(m); err != nil {
			return err
		}
		return w.Flush()
	}
	// First the primary's position, so the follower knows at once how
	// far it is behind (and when it has caught up).
	if err := send(message{Type: msgPing, Pos: p.store.Position()}); err != nil {
		return streamErr(ctx, err)
	}
	cursor := pos
	for {
		if full {
			snap, err := p.store.Snapshot()
			if err != nil {
				return err
			}
			if err := send(message{Type: msgSnapshot, Snapshot: snap, Pos: snap.Pos}); err != nil {
				return streamErr(ctx, err)
			}
			p.update(id, gen, func(st *FollowerStatus) { st.FullCopies++ })
			p.log.Info("replica sent a full copy", "replica", id, "position", snap.Pos)
			cursor, full = snap.Pos, false
		}
		changes, err := p.store.ChangesSince(cursor, batchSize)
		if errors.Is(err, storage.ErrChangesTrimmed) {
			full = true
			continue
		}
		if err != nil {
			return err
		}
		for _, c := range changes {
			files, err := p.store.ChangeFiles(c)
			if err != nil {
				return err
			}
			m := message{Type: msgChange, Change: c.Raw, Files: files, Packs: p.store.ChangePacks(c), Pos: p.store.Position()}
			if err := send(m); err != nil {
				return streamErr(ctx, err)
			}
			cursor = c.Pos
		}
		if len(changes) > 0 {
			continue
		}
		wait, stop := context.WithTimeout(ctx, PingInterval)
		err = p.store.WaitChange(wait, cursor)
		stop()
		if ctx.Err() != nil {
			return streamErr(ctx, ctx.Err())
		}
		if err != nil { // idle: ping
			if err := send(message{Type: msgPing, Pos: p.store.Position()}); err != nil {
				return streamErr(ctx, err)
			}
		}
	}
}

// holds reports whether a follower at pos with sum holds a prefix of this
// store's history, so the stream may go on from pos.
func (p *Primary) holds(pos uint64, sum string) bool {
	cur := p.store.Position()
	if pos > cur {
		return false // ahead: a former primary's changes nobody acked
	}
	have, err := p.store.SumAt(pos)
	return err == nil && have == sum
}

// streamErr prefers why the stream's context ended (the follower hung up)
// to the write error that followed from it.
func streamErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}
