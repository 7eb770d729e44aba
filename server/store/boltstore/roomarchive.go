package boltstore

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/merveilles/hearth/server/store"
)

var _ store.RoomArchive = (*Store)(nil)

// occupantKey files room records under the whole occupant JID
// (room@rooms.DOMAIN/nick), so a "with" filter on an occupant is an index
// walk rather than a scan of the room's archive.
func occupantKey(with string) string { return with }

// AppendRoomArchive stores records in a room's archive in one group commit
// (bbolt Batch), fsynced before it returns, like AppendArchive.
func (s *Store) AppendRoomArchive(ctx context.Context, room string, recs ...store.ArchiveRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b, err := roomBucket(tx, room)
		if err != nil {
			return err
		}
		mb, err := b.CreateBucketIfNotExists(bucketMAM)
		if err != nil {
			return err
		}
		return appendRecords(mb, recs, occupantKey)
	})
	if err != nil {
		return fmt.Errorf("archive for room %s: %w", room, err)
	}
	return nil
}

// QueryRoomArchive returns one page of a room's archive; store.ErrNotFound
// if the room does not exist. WithBare filters by occupant JID
// (room@rooms.DOMAIN/nick) through the index; WithFull matches the same
// way by a scan.
func (s *Store) QueryRoomArchive(ctx context.Context, room string, q store.ArchiveQuery) (store.ArchivePage, error) {
	var page store.ArchivePage
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := roomBucket(tx, room)
		if err != nil {
			return err
		}
		page, err = queryRecords(b.Bucket(bucketMAM), q, occupantKey)
		return err
	})
	if err != nil {
		return store.ArchivePage{}, fmt.Errorf("query archive of room %s: %w", room, err)
	}
	return page, nil
}

// ReplaceRoomArchive rewrites one record's stanza in place: its ID, With and
// so its index entries and counts stay as they were.
func (s *Store) ReplaceRoomArchive(ctx context.Context, room string, id uint64, stanza []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := roomBucket(tx, room)
		if err != nil {
			return err
		}
		var m *bolt.Bucket
		if mb := b.Bucket(bucketMAM); mb != nil {
			m = mb.Bucket(bucketMAMMsgs)
		}
		var v []byte
		if m != nil {
			v = m.Get(be64(id))
		}
		if v == nil {
			return fmt.Errorf("archive id %d: %w", id, store.ErrNotFound)
		}
		r, err := decodeRecord(id, v)
		if err != nil {
			return err
		}
		r.Stanza = stanza
		return m.Put(be64(id), encodeRecord(r))
	})
	if err != nil {
		return fmt.Errorf("replace in archive of room %s: %w", room, err)
	}
	return nil
}

// PruneRoomArchive deletes, room by room, the records older than what
// cutoff returns for the room; a zero time keeps the room's whole archive.
// PruneStats.Users counts the rooms something was removed from, and
// progress is told after each room.
func (s *Store) PruneRoomArchive(ctx context.Context, cutoff func(store.Room) time.Time, dryRun bool, progress store.PruneProgress) (store.PruneStats, error) {
	var st store.PruneStats
	rooms, err := s.ListRooms(ctx)
	if err != nil {
		return st, fmt.Errorf("prune room archives: %w", err)
	}
	for i, r := range rooms {
		name := r.Name
		var before uint64
		if t := cutoff(r); !t.IsZero() && t.UnixNano() > 0 {
			before = uint64(t.UnixNano())
		}
		// A room deleted since the listing has no bucket: nothing to do.
		locate := func(tx *bolt.Tx) *bolt.Bucket {
			b, err := roomBucket(tx, name)
			if err != nil {
				return nil
			}
			return b.Bucket(bucketMAM)
		}
		removed, kept, err := s.pruneRecords(ctx, locate, occupantKey, before, dryRun)
		if err != nil {
			return st, fmt.Errorf("prune archive of room %s: %w", name, err)
		}
		if removed > 0 {
			st.Users++
		}
		st.Removed += removed
		st.Kept += kept
		if progress != nil {
			progress(i+1, len(rooms), st.Removed)
		}
	}
	return st, nil
}
