package boltstore

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/merveilles/hearth/server/store"
)

// AppendArchives stores several users' records in one transaction and one
// fsync, for a caller that does its own group commit (the mam module's
// writer): unlike AppendArchive it does not wait for bbolt's batch timer.
// It is all or nothing; on an error the caller may retry user by user
// with AppendArchive to find whose records failed.
func (s *Store) AppendArchives(ctx context.Context, byUser map[string][]store.ArchiveRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for user, recs := range byUser {
			mb, err := subBucket(tx, user, bucketMAM, true)
			if err != nil {
				return fmt.Errorf("archive for %s: %w", user, err)
			}
			if err := appendRecords(mb, recs, bareOf); err != nil {
				return fmt.Errorf("archive for %s: %w", user, err)
			}
		}
		return nil
	})
}
