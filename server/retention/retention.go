// Package retention expires old messages from personal archives, offline
// queues and room archives, as the configuration says (retention.archive,
// retention.offline, retention.room_archive and each room's own retention).
// The daemon runs it once a day; "hearth prune" runs it on demand.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/merveilles/hearth/server"
	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Store is what pruning needs. A store that also implements
// store.RoomArchive has its room archives pruned too.
type Store interface {
	store.Archive
	store.OfflineRetention
}

// Options tune one run.
type Options struct {
	DryRun bool
	// Now is the reference time (zero: time.Now()); tests move it.
	Now time.Time
	// Progress, if set, hears about each user (or room) done: what
	// ("archive", "offline" or "rooms"), users or rooms done, in all,
	// messages removed so far.
	Progress func(what string, done, total, removed int)
}

// Report says what a run removed, or would remove in a dry run.
type Report struct {
	DryRun          bool
	ArchiveCutoff   time.Time // zero when archives are kept forever
	OfflineCutoff   time.Time
	Archive         store.PruneStats
	Offline         store.PruneStats
	ArchiveDisabled bool
	OfflineDisabled bool
	// Rooms is what left room archives (Users counts rooms); RoomsDefault
	// is the retention of rooms without their own (0: forever). NoRooms
	// means the store keeps no rooms.
	Rooms        store.PruneStats
	RoomsDefault time.Duration
	NoRooms      bool
}

// Prune removes archived messages, offline messages and room archive
// messages older than the configured retention.
func Prune(ctx context.Context, st Store, cfg config.Retention, opt Options) (Report, error) {
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	rep := Report{DryRun: opt.DryRun, ArchiveDisabled: cfg.Archive <= 0, OfflineDisabled: cfg.Offline <= 0}
	progress := func(what string) store.PruneProgress {
		if opt.Progress == nil {
			return nil
		}
		return func(done, total, removed int) { opt.Progress(what, done, total, removed) }
	}
	if !rep.ArchiveDisabled {
		rep.ArchiveCutoff = now.Add(-cfg.Archive.D())
		s, err := st.PruneArchive(ctx, rep.ArchiveCutoff, opt.DryRun, progress("archive"))
		rep.Archive = s
		if err != nil {
			return rep, fmt.Errorf("prune archives: %w", err)
		}
	}
	if !rep.OfflineDisabled {
		rep.OfflineCutoff = now.Add(-cfg.Offline.D())
		s, err := st.PruneOffline(ctx, OfflineExpired(rep.OfflineCutoff), opt.DryRun, progress("offline"))
		rep.Offline = s
		if err != nil {
			return rep, fmt.Errorf("prune offline messages: %w", err)
		}
	}
	rep.RoomsDefault = cfg.RoomArchive.D()
	ra, ok := st.(store.RoomArchive)
	rep.NoRooms = !ok
	if ok {
		cutoff := func(r store.Room) time.Time {
			if d := RoomRetention(cfg, r); d > 0 {
				return now.Add(-d)
			}
			return time.Time{}
		}
		s, err := ra.PruneRoomArchive(ctx, cutoff, opt.DryRun, progress("rooms"))
		rep.Rooms = s
		if err != nil {
			return rep, fmt.Errorf("prune room archives: %w", err)
		}
	}
	return rep, nil
}

// RoomRetention is how long room r keeps its archive: the room's own
// retention if a chat admin set one, held within the configured bounds (a
// value set before the bounds narrowed obeys the new ones), else the server
// default. 0 means forever.
func RoomRetention(cfg config.Retention, r store.Room) time.Duration {
	return cfg.ForRoom(r.Retention)
}

// OfflineExpired reports stored offline stanzas whose delay stamp (set by
// the offline module when it stored them) is before cutoff. A stanza
// without a readable stamp is kept: better too long than lost by mistake.
func OfflineExpired(cutoff time.Time) func([]byte) bool {
	return func(raw []byte) bool {
		t, ok := OfflineStamp(raw)
		return ok && t.Before(cutoff)
	}
}

// OfflineStamp reads the time an offline message was stored.
func OfflineStamp(raw []byte) (time.Time, bool) {
	doc := "<stream xmlns='" + elem.NSClient + "'>" + string(raw)
	d := elem.NewDecoder(strings.NewReader(doc), elem.Limits{MaxBytes: len(doc) + 1, MaxDepth: 1000})
	if _, err := d.ReadHeader(); err != nil {
		return time.Time{}, false
	}
	el, err := d.ReadElement()
	if err != nil {
		return time.Time{}, false
	}
	dl := el.Child("urn:xmpp:delay", "delay")
	if dl == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, dl.Get("stamp"))
	return t, err == nil
}

// Current gives the chat service running now (nil while it restarts); the
// supervisor's atomic pointer to it fits.
type Current interface{ Load() *server.Server }

// Daily returns a supervisor service body that prunes a minute after start
// and then every 24 hours until ctx ends. A failed run is logged and tried
// again an hour later rather than ending the service. Each run uses the
// retention periods of the chat service's live configuration, so a reload
// applies to the next run.
func Daily(current Current, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		// Let the chat service come up first.
		wait := time.Minute
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			wait = 24 * time.Hour
			var st Store
			var cfg config.Retention
			ok := false
			if srv := current.Load(); srv != nil {
				st, ok = srv.Store.(Store)
				cfg = srv.XMPP.Config().Retention
			}
			if !ok {
				log.Warn("retention: the store cannot prune, or the chat service is restarting; trying again in an hour")
				wait = time.Hour
				continue
			}
			start := time.Now()
			rep, err := Prune(ctx, st, cfg, Options{})
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return nil
				}
				log.Error("retention: prune failed; trying again in an hour", "err", err)
				wait = time.Hour
				continue
			}
			log.Info("retention: pruned", "archived_removed", rep.Archive.Removed, "offline_removed", rep.Offline.Removed,
				"room_archives_removed", rep.Rooms.Removed, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}
