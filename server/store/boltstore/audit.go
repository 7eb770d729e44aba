package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/merveilles/hearth/server/store"
)

// The audit log is one top-level bucket, append only:
//
//	audit   big-endian time (ns) | big-endian sequence -> entry as JSON
//
// The sequence keeps entries made in the same nanosecond (or with a clock
// that stepped back) apart and in the order they were appended.
var bucketAudit = []byte("audit")

var _ store.Audit = (*Store)(nil)

// AppendAudit durably stores an entry; a zero Time is set to now.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit entry: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		var ns uint64
		if t := e.Time.UnixNano(); t > 0 {
			ns = uint64(t)
		}
		return b.Put(append(be64(ns), be64(seq)...), raw)
	})
	if err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	return nil
}

// ListAudit returns the newest limit entries (all if limit <= 0), oldest
// first.
func (s *Store) ListAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	var out []store.AuditEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var e store.AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit entry %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}
