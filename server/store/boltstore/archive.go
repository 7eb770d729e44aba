package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/merveilles/hearth/server/store"
)

// The archive lives inside each user's bucket, so deleting an account
// deletes its archive too:
//
//	u/<user>/mam/m   big-endian ID (time in ns) -> uvarint len(with) | with | stanza
//	u/<user>/mam/w   bare contact | 0x00 | big-endian ID -> empty (per-contact index)
//	u/<user>/mam/c   bare contact -> big-endian count; 0x00 -> total
//
// IDs are times, so a time range is a key range of "m" and of each contact's
// slice of "w": every query is a seek plus a walk of at most one page.
var (
	bucketMAM      = []byte("mam")
	bucketMAMMsgs  = []byte("m")
	bucketMAMWith  = []byte("w")
	bucketMAMCount = []byte("c")
)

// countScanLimit bounds the work spent counting a filtered result set
// (RSM <count/>); beyond it the count is left out rather than slowing the
// query down.
const countScanLimit = 10000

// pruneChunk is how many records one prune transaction deletes, so a large
// prune neither holds the write lock long nor builds a huge transaction.
const pruneChunk = 5000

var _ store.Archive = (*Store)(nil)
var _ store.OfflineRetention = (*Store)(nil)

func be64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func withKey(bare string, id uint64) []byte {
	k := make([]byte, 0, len(bare)+9)
	k = append(k, bare...)
	k = append(k, 0)
	return append(k, be64(id)...)
}

// indexKey says under which key of the "w" index and the "c" counters a
// record's With is filed, and so what ArchiveQuery.WithBare matches: the
// contact's bare JID in a user's archive (bareOf), the whole occupant JID
// in a room's, where every bare JID would be the room.
type indexKey func(with string) string

func bareOf(j string) string {
	if i := bytes.IndexByte([]byte(j), '/'); i >= 0 {
		return j[:i]
	}
	return j
}

func encodeRecord(r store.ArchiveRecord) []byte {
	out := binary.AppendUvarint(make([]byte, 0, len(r.With)+len(r.Stanza)+2), uint64(len(r.With)))
	out = append(out, r.With...)
	return append(out, r.Stanza...)
}

func decodeRecord(id uint64, v []byte) (store.ArchiveRecord, error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return store.ArchiveRecord{}, fmt.Errorf("archive record %d is corrupt", id)
	}
	return store.ArchiveRecord{
		ID:     id,
		With:   string(v[w : w+int(n)]),
		Stanza: append([]byte(nil), v[w+int(n):]...),
	}, nil
}

// countKey names a contact's counter; the total has a key no JID can be.
func countKey(bare string) []byte {
	if bare == "" {
		return []byte{0}
	}
	return []byte(bare)
}

func addCount(c *bolt.Bucket, bare string, delta int64) error {
	key := countKey(bare)
	var cur int64
	if v := c.Get(key); len(v) == 8 {
		cur = int64(binary.BigEndian.Uint64(v))
	}
	cur += delta
	if cur <= 0 {
		return c.Delete(key)
	}
	return c.Put(key, be64(uint64(cur)))
}

func getCount(c *bolt.Bucket, bare string) int {
	if c == nil {
		return 0
	}
	if v := c.Get(countKey(bare)); len(v) == 8 {
		return int(binary.BigEndian.Uint64(v))
	}
	return 0
}

// AppendArchive stores records in one group commit (bbolt Batch): it
// returns once they are fsynced together with other writers' records.
func (s *Store) AppendArchive(ctx context.Context, user string, recs ...store.ArchiveRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		mb, err := subBucket(tx, user, bucketMAM, true)
		if err != nil {
			return err
		}
		return appendRecords(mb, recs, bareOf)
	})
	if err != nil {
		return fmt.Errorf("archive for %s: %w", user, err)
	}
	return nil
}

// appendRecords adds records to the archive kept in mb (a user's or a
// room's "mam" bucket), creating its sub-buckets on first use.
func appendRecords(mb *bolt.Bucket, recs []store.ArchiveRecord, key indexKey) error {
	m, err := mb.CreateBucketIfNotExists(bucketMAMMsgs)
	if err != nil {
		return err
	}
	w, err := mb.CreateBucketIfNotExists(bucketMAMWith)
	if err != nil {
		return err
	}
	c, err := mb.CreateBucketIfNotExists(bucketMAMCount)
	if err != nil {
		return err
	}
	// IDs are times, so records mostly land at the end of "m": fuller
	// pages there mean fewer splits and a smaller file.
	m.FillPercent = 0.9
	// Counters change once per contact and call, not once per record: a
	// group commit carries many records of the same conversation.
	counts := make(map[string]int64, 2)
	// An ID above the largest stored one cannot be taken: the usual case
	// (IDs are times) skips the lookup.
	lastKey, _ := m.Cursor().Last()
	last := append([]byte(nil), lastKey...)
	for _, r := range recs {
		k := be64(r.ID)
		if bytes.Compare(k, last) > 0 {
			last = k
		} else if m.Get(k) != nil {
			return fmt.Errorf("archive id %d: %w", r.ID, store.ErrExists)
		}
		if err := m.Put(k, encodeRecord(r)); err != nil {
			return err
		}
		bare := key(r.With)
		if err := w.Put(withKey(bare, r.ID), nil); err != nil {
			return err
		}
		counts[bare]++
		counts[""]++
	}
	for bare, n := range counts {
		if err := addCount(c, bare, n); err != nil {
			return err
		}
	}
	return nil
}

// idCursor walks IDs stored as the 8-byte suffix of keys sharing a prefix.
type idCursor struct {
	c      *bolt.Cursor
	prefix []byte
}

func (ic idCursor) id(k []byte) (uint64, bool) {
	if k == nil || len(k) != len(ic.prefix)+8 || !bytes.HasPrefix(k, ic.prefix) {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(ic.prefix):]), true
}

func (ic idCursor) key(id uint64) []byte {
	return append(append([]byte(nil), ic.prefix...), be64(id)...)
}

// first positions on the smallest ID >= lo.
func (ic idCursor) first(lo uint64) (uint64, bool) {
	k, _ := ic.c.Seek(ic.key(lo))
	return ic.id(k)
}

// last positions on the largest ID <= hi.
func (ic idCursor) last(hi uint64) (uint64, bool) {
	target := ic.key(hi)
	k, _ := ic.c.Seek(target)
	switch {
	case k == nil:
		k, _ = ic.c.Last()
	case !bytes.Equal(k, target):
		k, _ = ic.c.Prev()
	}
	return ic.id(k)
}

func (ic idCursor) next() (uint64, bool) { k, _ := ic.c.Next(); return ic.id(k) }
func (ic idCursor) prev() (uint64, bool) { k, _ := ic.c.Prev(); return ic.id(k) }

// QueryArchive returns one page of a user's archive.
func (s *Store) QueryArchive(ctx context.Context, user string, q store.ArchiveQuery) (store.ArchivePage, error) {
	var page store.ArchivePage
	err := s.db.View(func(tx *bolt.Tx) error {
		mb, _ := subBucket(tx, user, bucketMAM, false)
		var err error
		page, err = queryRecords(mb, q, bareOf)
		return err
	})
	if err != nil {
		return store.ArchivePage{}, fmt.Errorf("query archive of %s: %w", user, err)
	}
	return page, nil
}

// queryRecords returns one page of the archive kept in mb, which may be nil
// (nothing archived yet).
func queryRecords(mb *bolt.Bucket, q store.ArchiveQuery, key indexKey) (store.ArchivePage, error) {
	page := store.ArchivePage{Complete: true}
	if q.Max < 0 {
		q.Max = 0
	}
	err := func() error {
		if mb == nil || mb.Bucket(bucketMAMMsgs) == nil {
			page.Count = 0
			return nil
		}
		m := mb.Bucket(bucketMAMMsgs)
		lo, hi := q.Start, uint64(1<<64-1)
		if q.End != 0 {
			hi = q.End
		}
		if q.AfterID != 0 && q.AfterID+1 > lo {
			lo = q.AfterID + 1
		}
		if q.BeforeID != 0 && q.BeforeID-1 < hi {
			hi = q.BeforeID - 1
		}
		match := func(id uint64) (store.ArchiveRecord, bool, error) {
			v := m.Get(be64(id))
			if v == nil {
				return store.ArchiveRecord{}, false, nil
			}
			r, err := decodeRecord(id, v)
			if err != nil {
				return r, false, err
			}
			if q.WithBare != "" && key(r.With) != q.WithBare {
				return r, false, nil
			}
			if q.WithFull != "" && r.With != q.WithFull {
				return r, false, nil
			}
			return r, true, nil
		}

		if len(q.IDs) > 0 {
			return queryIDs(&page, q, lo, hi, match)
		}

		var ic idCursor
		if q.WithBare != "" {
			w := mb.Bucket(bucketMAMWith)
			if w == nil {
				page.Count = 0
				return nil
			}
			ic = idCursor{c: w.Cursor(), prefix: append([]byte(q.WithBare), 0)}
		} else {
			ic = idCursor{c: m.Cursor()}
		}

		// Count the filtered set, before paging narrows it.
		page.Count = -1
		if lo == 0 && hi == 1<<64-1 && q.WithFull == "" {
			page.Count = getCount(mb.Bucket(bucketMAMCount), q.WithBare)
		} else if lo <= hi {
			n := 0
			for id, ok := ic.first(lo); ok && id <= hi; id, ok = ic.next() {
				if q.WithFull != "" {
					if _, hit, err := match(id); err != nil {
						return err
					} else if !hit {
						continue
					}
				}
				if n++; n > countScanLimit {
					n = -1
					break
				}
			}
			page.Count = n
		} else {
			page.Count = 0
		}

		backward := q.LastPage || q.Before != 0
		if q.After != 0 && q.After+1 > lo {
			lo = q.After + 1
		}
		if q.Before != 0 && q.Before-1 < hi {
			hi = q.Before - 1
		}
		if lo > hi || (q.Before == 1) || (q.After == 1<<64-1) {
			return nil
		}
		var recs []store.ArchiveRecord
		if backward {
			for id, ok := ic.last(hi); ok && id >= lo; id, ok = ic.prev() {
				r, hit, err := match(id)
				if err != nil {
					return err
				}
				if !hit {
					continue
				}
				if len(recs) == q.Max {
					page.Complete = false
					break
				}
				recs = append(recs, r)
			}
			slices.Reverse(recs)
		} else {
			for id, ok := ic.first(lo); ok && id <= hi; id, ok = ic.next() {
				r, hit, err := match(id)
				if err != nil {
					return err
				}
				if !hit {
					continue
				}
				if len(recs) == q.Max {
					page.Complete = false
					break
				}
				recs = append(recs, r)
			}
		}
		page.Records = recs
		return nil
	}()
	if err != nil {
		return store.ArchivePage{}, err
	}
	return page, nil
}

func queryIDs(page *store.ArchivePage, q store.ArchiveQuery, lo, hi uint64, match func(uint64) (store.ArchiveRecord, bool, error)) error {
	ids := slices.Clone(q.IDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var all []store.ArchiveRecord
	for _, id := range ids {
		if id < lo || id > hi {
			continue
		}
		r, hit, err := match(id)
		if err != nil {
			return err
		}
		if hit {
			all = append(all, r)
		}
	}
	page.Count = len(all)
	var sel []store.ArchiveRecord
	for _, r := range all {
		if (q.After == 0 || r.ID > q.After) && (q.Before == 0 || r.ID < q.Before) {
			sel = append(sel, r)
		}
	}
	if len(sel) > q.Max {
		page.Complete = false
		if q.LastPage || q.Before != 0 {
			sel = sel[len(sel)-q.Max:]
		} else {
			sel = sel[:q.Max]
		}
	}
	page.Records = sel
	return nil
}

// userBuckets lists the users that have a bucket, in key order.
func (s *Store) userBuckets() ([]string, error) {
	var users []string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Cursor()
		for k, v := c.Seek([]byte("u/")); k != nil && bytes.HasPrefix(k, []byte("u/")); k, v = c.Next() {
			if v == nil {
				users = append(users, string(k[2:]))
			}
		}
		return nil
	})
	return users, err
}

// PruneArchive deletes records archived before the cutoff, in chunks.
func (s *Store) PruneArchive(ctx context.Context, before time.Time, dryRun bool, progress store.PruneProgress) (store.PruneStats, error) {
	var st store.PruneStats
	cutoff := uint64(0)
	if ns := before.UnixNano(); ns > 0 {
		cutoff = uint64(ns)
	}
	users, err := s.userBuckets()
	if err != nil {
		return st, fmt.Errorf("prune archives: %w", err)
	}
	for i, user := range users {
		locate := func(tx *bolt.Tx) *bolt.Bucket {
			mb, _ := subBucket(tx, user, bucketMAM, false)
			return mb
		}
		removed, kept, err := s.pruneRecords(ctx, locate, bareOf, cutoff, dryRun)
		if err != nil {
			return st, fmt.Errorf("prune archive of %s: %w", user, err)
		}
		if removed > 0 {
			st.Users++
		}
		st.Removed += removed
		st.Kept += kept
		if progress != nil {
			progress(i+1, len(users), st.Removed)
		}
	}
	return st, nil
}

// pruneRecords deletes the records before cutoff (an ID, that is a time in
// ns) from the archive bucket locate finds, one chunk per transaction;
// locate returns nil when there is no archive.
func (s *Store) pruneRecords(ctx context.Context, locate func(*bolt.Tx) *bolt.Bucket, key indexKey, cutoff uint64, dryRun bool) (removed, kept int, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return removed, kept, err
		}
		n, more := 0, false
		fn := func(tx *bolt.Tx) error {
			mb := locate(tx)
			if mb == nil || mb.Bucket(bucketMAMMsgs) == nil {
				return nil
			}
			m, w, c := mb.Bucket(bucketMAMMsgs), mb.Bucket(bucketMAMWith), mb.Bucket(bucketMAMCount)
			cur := m.Cursor()
			k, v := cur.First()
			type victim struct {
				id   uint64
				with string
			}
			var dead []victim
			for ; k != nil && binary.BigEndian.Uint64(k) < cutoff; k, v = cur.Next() {
				n++
				if dryRun {
					// A read-only walk holds no lock: count in one go.
					continue
				}
				if n > pruneChunk {
					n--
					more = true
					break
				}
				id := binary.BigEndian.Uint64(k)
				r, err := decodeRecord(id, v)
				if err != nil {
					return err
				}
				dead = append(dead, victim{id, key(r.With)})
			}
			// Deleting under a live cursor skips keys in bbolt: delete
			// after the walk.
			for _, d := range dead {
				if err := m.Delete(be64(d.id)); err != nil {
					return err
				}
				if err := w.Delete(withKey(d.with, d.id)); err != nil {
					return err
				}
				if err := addCount(c, d.with, -1); err != nil {
					return err
				}
				if err := addCount(c, "", -1); err != nil {
					return err
				}
			}
			if !more {
				kept = getCount(c, "")
				if dryRun {
					kept -= removed + n
				}
			}
			return nil
		}
		if dryRun {
			err = s.db.View(fn)
		} else {
			err = s.db.Update(fn)
		}
		if err != nil {
			return removed, kept, err
		}
		removed += n
		if !more {
			return removed, kept, nil
		}
	}
}

// PruneOffline deletes the offline messages for which expired is true.
func (s *Store) PruneOffline(ctx context.Context, expired func([]byte) bool, dryRun bool, progress store.PruneProgress) (store.PruneStats, error) {
	var st store.PruneStats
	users, err := s.userBuckets()
	if err != nil {
		return st, fmt.Errorf("prune offline messages: %w", err)
	}
	for i, user := range users {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		var removed, kept int
		fn := func(tx *bolt.Tx) error {
			removed, kept = 0, 0
			b, _ := subBucket(tx, user, bucketOffline, false)
			if b == nil {
				return nil
			}
			var dead [][]byte
			err := b.ForEach(func(k, v []byte) error {
				if expired(v) {
					dead = append(dead, append([]byte(nil), k...))
				} else {
					kept++
				}
				return nil
			})
			if err != nil {
				return err
			}
			removed = len(dead)
			if dryRun {
				return nil
			}
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}
		if dryRun {
			err = s.db.View(fn)
		} else {
			err = s.db.Update(fn)
		}
		if err != nil {
			return st, fmt.Errorf("prune offline messages of %s: %w", user, err)
		}
		if removed > 0 {
			st.Users++
		}
		st.Removed += removed
		st.Kept += kept
		if progress != nil {
			progress(i+1, len(users), st.Removed)
		}
	}
	return st, nil
}
