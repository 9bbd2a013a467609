package fjordtest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Group is a replica group of real `fjord serve --ha` processes on
// loopback: one host key, one group key, one admin key and one leader
// Lease (NAMESPACE/fjord) on the API server of Kubeconfig.
type Group struct {
	t          testing.TB
	Namespace  string
	Kubeconfig string
	HostKey    string
	GroupKey   string
	// Members by replica id, in the order given to NewGroup.
	Members map[string]*Server
	IDs     []string
	// Flags are added to every member's serve command line.
	Flags []string
}

// Short leases keep failover fast in tests: a dead primary is replaced
// about LeaseDuration after its last renewal.
const (
	GroupLease   = 2 * time.Second
	GroupRenew   = 1500 * time.Millisecond
	GroupRetry   = 250 * time.Millisecond
	GroupSyncFor = 3 * time.Second
)

// NewGroup prepares the members ids (none started) with --sync-replicas
// syncReplicas.
func NewGroup(t testing.TB, kubeconfig, namespace string, syncReplicas int, ids ...string) *Group {
	t.Helper()
	g := &Group{t: t, Namespace: namespace, Kubeconfig: kubeconfig, Members: map[string]*Server{}, IDs: ids}
	dir := t.TempDir()
	var err error
	if g.HostKey, err = WriteKey(filepath.Join(dir, "host_key")); err != nil {
		t.Fatal(err)
	}
	if g.GroupKey, err = WriteKey(filepath.Join(dir, "ha_key")); err != nil {
		t.Fatal(err)
	}
	var first *Server
	for _, id := range ids {
		s := New(t)
		if first == nil {
			first = s
		} else {
			s.Key = first.Key // one admin: the primary registers it
		}
		g.Members[id] = s
	}
	g.Flags = []string{"--sync-replicas", strconv.Itoa(syncReplicas)}
	return g
}

// Start starts member id (again, after Kill or Stop). A port of the member
// taken meanwhile by some client's outgoing connection (the ports are
// kept across restarts) is waited out.
func (g *Group) Start(id string) error {
	var err error
	for range 20 {
		if err = g.start(id); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
	return err
}

func (g *Group) start(id string) error {
	s := g.Members[id]
	args := append([]string{"--host-key", g.HostKey, "--kubeconfig", g.Kubeconfig,
		"--ha", g.Namespace + "/fjord", "--replica-id", id, "--advertise", s.SSHAddr, "--ha-key", g.GroupKey,
		"--lease-duration", GroupLease.String(), "--renew-deadline", GroupRenew.String(), "--retry-period", GroupRetry.String(),
		"--sync-timeout", GroupSyncFor.String()}, g.Flags...)
	return s.Start(args...)
}

// GroupStatus is `fjord replicas -o json`, the fields tests look at.
type GroupStatus struct {
	Primary       string   `json:"primary"`
	ReadOnly      bool     `json:"readOnly"`
	Reason        string   `json:"reason"`
	SyncFollowers []string `json:"syncFollowers"`
	AckedPosition uint64   `json:"ackedPosition"`
	Members       []struct {
		ID         string `json:"id"`
		Role       string `json:"role"`
		Position   uint64 `json:"position"`
		LagChanges uint64 `json:"lagChanges"`
		Alive      bool   `json:"alive"`
	} `json:"members"`
}

// Status asks member id for the group.
func (g *Group) Status(id string) (GroupStatus, error) {
	var st GroupStatus
	out, err := g.Members[id].Fjord("replicas", "-o", "json")
	if err != nil {
		return st, fmt.Errorf("fjord replicas on %s: %v: %s", id, err, out)
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// WaitPrimary waits up to within for member asked to report a primary
// other than not (any, when not is "") and returns it.
func (g *Group) WaitPrimary(asked, not string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		st, err := g.Status(asked)
		if err == nil && st.Primary != "" && st.Primary != not {
			return st.Primary, nil
		}
		last = fmt.Sprintf("%+v %v", st, err)
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("fjordtest: no primary (other than %q) as %s sees it within %s: %s", not, asked, within, last)
}

// WaitWritable waits up to within until the primary, as member id sees
// it, has its synchronous replicas in sync (the group takes pushes).
func (g *Group) WaitWritable(id string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		st, err := g.Status(id)
		if err == nil && st.Primary != "" && !st.ReadOnly {
			return st.Primary, nil
		}
		last = fmt.Sprintf("%+v %v", st, err)
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("fjordtest: the group, as %s sees it, takes no pushes after %s: %s", id, within, last)
}

// Head returns the commit ref points at in repo on member id's disk ("" if
// none).
func (g *Group) Head(ctx context.Context, id, repo, ref string) string {
	out, err := g.Members[id].Git(ctx, g.Members[id].RepoPath(repo), "rev-parse", "--verify", "-q", ref)
	if err != nil {
		return ""
	}
	return out
}
