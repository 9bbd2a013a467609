package mirror

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// Update is a change to a mirror's settings; nil and empty fields keep
// what is there.
type Update struct {
	// Interval replaces the time between scheduled syncs.
	Interval *time.Duration
	// Retention replaces how many history-protection events (and their
	// backup refs) are kept; lowering it drops the oldest at once.
	Retention *int
	// Credentials are files to store, replacing those of the same name
	// (CredSSHKey, CredKnownHosts, CredToken, CredWebhookSecret).
	Credentials map[string][]byte
	// RemoveCredentials names credential files to delete.
	RemoveCredentials []string
}

// Update changes a mirror's interval, retention or credentials in place,
// without the delete-and-add that would drop its history. Nothing changes
// when the update is refused. New credentials take effect at the next sync
// (they are read at every sync and every webhook).
func (m *Manager) Update(ctx context.Context, repo string, u Update) (storage.Mirror, error) {
	mir, err := m.store.Mirror(repo)
	if err != nil {
		return mir, err
	}
	if u.Interval != nil && *u.Interval < time.Second {
		return mir, fmt.Errorf("interval %s is too short: give at least 1s, e.g. --interval 1m", *u.Interval)
	}
	if u.Retention != nil && *u.Retention < 1 {
		return mir, fmt.Errorf("retention %d: keep at least 1 event, e.g. --retention 100", *u.Retention)
	}
	for _, name := range u.RemoveCredentials {
		if _, ok := u.Credentials[name]; ok {
			return mir, fmt.Errorf("credential %s is both given and removed: do one", name)
		}
		if !mir.HasCredential(name) {
			return mir, fmt.Errorf("mirror %q has no %s to remove (it has: %v)", repo, name, mir.Credentials)
		}
	}
	up, err := ParseUpstream(mir.Upstream)
	if err != nil {
		return mir, err
	}
	if up.Scheme == "ssh" && slices.Contains(u.RemoveCredentials, CredKnownHosts) {
		return mir, fmt.Errorf("an ssh upstream needs its known_hosts (fjord never trusts a host key on first use): give a new one with --known-hosts FILE instead of removing it")
	}
	dir := m.store.CredentialDir("mirror", repo)
	if err := m.store.WriteCredentials(dir, repo, u.Credentials); err != nil {
		return mir, err
	}
	if err := m.store.RemoveCredentials(dir, repo, u.RemoveCredentials); err != nil {
		return mir, err
	}
	mir, err = m.store.UpdateMirror(repo, func(s *storage.Mirror) error {
		if u.Interval != nil {
			s.Interval = *u.Interval
		}
		if u.Retention != nil {
			s.Retention = *u.Retention
		}
		for name := range u.Credentials {
			if !s.HasCredential(name) {
				s.Credentials = append(s.Credentials, name)
			}
		}
		s.Credentials = slices.DeleteFunc(s.Credentials, func(c string) bool { return slices.Contains(u.RemoveCredentials, c) })
		slices.Sort(s.Credentials)
		return nil
	})
	if err != nil {
		return mir, err
	}
	if u.Interval != nil {
		m.schedule(repo, jitter(*u.Interval))
	}
	if u.Retention != nil {
		dropped, err := m.store.RecordMirrorEvents(repo, nil, *u.Retention)
		if err != nil {
			return mir, fmt.Errorf("apply retention %d: %w", *u.Retention, err)
		}
		if err := m.dropBackups(ctx, repo, dropped); err != nil {
			return mir, err
		}
	}
	m.log.Info("mirror updated", "mirror", repo, "interval", mir.Interval, "retention", mir.Retention, "credentials", mir.Credentials)
	return mir, nil
}
