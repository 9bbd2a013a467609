package storage

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// LastAppSyncs returns the newest sync record of every app that has one,
// keyed by app name, read in one transaction: a page listing every app
// needs them all at once.
func (s *Store) LastAppSyncs() (map[string]AppSync, error) {
	out := map[string]AppSync{}
	err := s.db.View(func(tx *bolt.Tx) error {
		top := tx.Bucket(bucketAppSyncs)
		return top.ForEach(func(name, v []byte) error {
			b := top.Bucket(name)
			if v != nil || b == nil {
				return nil
			}
			_, raw := b.Cursor().Last()
			if raw == nil {
				return nil
			}
			var rec AppSync
			if err := json.Unmarshal(raw, &rec); err != nil {
				return fmt.Errorf("decode last sync of app %q: %w", name, err)
			}
			out[string(name)] = rec
			return nil
		})
	})
	return out, err
}
