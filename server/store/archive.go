package store

import (
	"context"
	"time"
)

// ArchiveRecord is one archived message (XEP-0313) in a user's archive.
type ArchiveRecord struct {
	// ID orders the archive: it is the archiving time in nanoseconds since
	// the Unix epoch, made unique by the caller, so a time range is a key
	// range and no separate time index is needed.
	ID uint64
	// With is the contact's JID as it appeared on the message (full or
	// bare); the store indexes its bare part.
	With string
	// Stanza is the serialized message as delivered.
	Stanza []byte
}

// Time is when the message was archived.
func (r ArchiveRecord) Time() time.Time { return time.Unix(0, int64(r.ID)).UTC() }

// ArchiveQuery selects and pages through a user's archive. Zero fields do
// not filter.
type ArchiveQuery struct {
	WithBare string // contact's bare JID
	WithFull string // when set, only records whose With is exactly this
	Start    uint64 // inclusive lower ID bound (a time in nanoseconds)
	End      uint64 // inclusive upper ID bound; 0 means none
	AfterID  uint64 // exclusive bounds (XEP-0313 before-id/after-id)
	BeforeID uint64
	IDs      []uint64 // only these records

	// Paging (XEP-0059). Max is the page size. Backward pages (Before set,
	// or LastPage) take the newest Max records before the cursor; either
	// way a page is returned oldest first.
	Max      int
	After    uint64
	Before   uint64
	LastPage bool // <before/> with no id: the last page
}

// ArchivePage is one page of results.
type ArchivePage struct {
	Records []ArchiveRecord
	// Complete reports that no record lies beyond this page in the paging
	// direction.
	Complete bool
	// Count is the number of records matching the filters, -1 when it
	// would have cost too much to compute.
	Count int
}

// PruneStats says what a prune removed (or would remove, in a dry run).
type PruneStats struct {
	Users   int // users with something removed
	Removed int
	Kept    int
}

// PruneProgress is told after each user, for progress on large stores.
type PruneProgress func(doneUsers, totalUsers, removed int)

// Archive stores personal message archives, written with group commits.
type Archive interface {
	// AppendArchive durably stores records in a user's archive; an ID
	// already present is refused with ErrExists.
	AppendArchive(ctx context.Context, user string, recs ...ArchiveRecord) error
	QueryArchive(ctx context.Context, user string, q ArchiveQuery) (ArchivePage, error)
	// PruneArchive removes every record older than before, for every user.
	PruneArchive(ctx context.Context, before time.Time, dryRun bool, progress PruneProgress) (PruneStats, error)
}

// OfflineRetention expires offline messages. The queue does not store
// times, so the caller decides from each stored stanza (its delay stamp).
type OfflineRetention interface {
	PruneOffline(ctx context.Context, expired func(stanza []byte) bool, dryRun bool, progress PruneProgress) (PruneStats, error)
}
