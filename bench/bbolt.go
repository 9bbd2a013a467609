package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Shape of the bbolt workload: one put of a 128-byte value per transaction,
// under an increasing 8-byte key, the smallest commit etcd's backend makes.
const (
	boltValueSize = 128
	// boltSpace bounds the database file: tens of thousands of small
	// commits grow it by a few MiB.
	boltSpace = 64 << 20
)

// runBoltCommit measures bbolt commit latency with the real go.etcd.io/bbolt:
// each transaction puts one small key, so each sample is one full commit
// with its two fdatasyncs (data pages, then meta page).
func runBoltCommit(ctx context.Context, r *diskRun) (res Result, err error) {
	path := r.scratch.path("bbolt.db")
	r.scratch.track(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return Result{}, fmt.Errorf("open bbolt %s: %w", path, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close bbolt %s: %w", path, cerr)
		}
	}()
	bucket := []byte("bench")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucket)
		return err
	}); err != nil {
		return Result{}, fmt.Errorf("create bucket in %s: %w", path, err)
	}

	value := make([]byte, boltValueSize)
	fillRandom(value, boltValueSize)
	var seq uint64
	o := func(context.Context) (time.Duration, int64, error) {
		seq++
		key := binary.BigEndian.AppendUint64(nil, seq)
		t0 := time.Now()
		err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucket).Put(key, value)
		})
		return time.Since(t0), int64(len(key) + len(value)), err
	}
	m, err := r.phase(WorkloadBolt, o).run(ctx)
	if err != nil {
		return Result{}, err
	}
	return result(WorkloadBolt, "bbolt: one 128-byte put per transaction", "commit", boltValueSize, 1, m), nil
}
