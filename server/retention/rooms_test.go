package retention_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/retention"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
)

const day = 24 * time.Hour

// seedRooms makes rooms whose records are the given ages before now.
func seedRooms(t *testing.T, rooms map[string]time.Duration, ages map[string][]time.Duration) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for name, keep := range rooms {
		if err := st.CreateRoom(ctx, store.Room{Name: name, Retention: keep}); err != nil {
			t.Fatal(err)
		}
		var recs []store.ArchiveRecord
		for i, age := range ages[name] {
			recs = append(recs, store.ArchiveRecord{ID: id(now.Add(-age), i), With: name + "@rooms.localhost/nick", Stanza: []byte("<message/>")})
		}
		if err := st.AppendRoomArchive(ctx, name, recs...); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func roomCount(t *testing.T, st *boltstore.Store, room string) int {
	t.Helper()
	p, err := st.QueryRoomArchive(context.Background(), room, store.ArchiveQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func TestPruneRooms(t *testing.T) {
	st := seedRooms(t, map[string]time.Duration{
		"lobby": 0,          // server default, 90d
		"short": 3 * day,    // its own
		"tiny":  time.Hour,  // below the 1d floor: held at 1d
		"long":  1000 * day, // above room_archive_max (365d): held at 365d
	}, map[string][]time.Duration{
		"lobby": {200 * day, 100 * day, 10 * day},
		"short": {10 * day, 2 * day},
		"tiny":  {2 * day, 12 * time.Hour},
		"long":  {400 * day, 300 * day},
	})
	// Personal archives are pruned in the same run, with their own period.
	if err := st.AppendArchive(context.Background(), "alice", store.ArchiveRecord{ID: id(now.Add(-100*day), 0), With: "bob@localhost"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := config.Default("localhost").Retention
	progress := map[string]int{}
	rep, err := retention.Prune(ctx, st, cfg, retention.Options{DryRun: true, Now: now, Progress: func(what string, done, total, _ int) {
		if what == "rooms" && total != 4 {
			t.Errorf("rooms progress total %d, want 4", total)
		}
		progress[what] = done
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := store.PruneStats{Users: 4, Removed: 5, Kept: 4}
	if rep.Rooms != want || rep.NoRooms || rep.RoomsDefault != 90*day || progress["rooms"] != 4 {
		t.Fatalf("dry run: %+v (progress %v), want rooms %+v", rep, progress, want)
	}
	if rep.Archive.Removed != 0 || rep.Archive.Kept != 1 {
		t.Fatalf("personal archive in the dry run: %+v", rep.Archive)
	}
	for room, n := range map[string]int{"lobby": 3, "short": 2, "tiny": 2, "long": 2} {
		if got := roomCount(t, st, room); got != n {
			t.Fatalf("a dry run removed from %s: %d left, want %d", room, got, n)
		}
	}

	rep, err = retention.Prune(ctx, st, cfg, retention.Options{Now: now})
	if err != nil || rep.Rooms != want {
		t.Fatalf("prune: %v %+v", err, rep)
	}
	for room, n := range map[string]int{"lobby": 1, "short": 1, "tiny": 1, "long": 1} {
		if got := roomCount(t, st, room); got != n {
			t.Fatalf("after prune %s has %d, want %d", room, got, n)
		}
	}
	p, _ := st.QueryRoomArchive(ctx, "tiny", store.ArchiveQuery{Max: 10})
	if len(p.Records) != 1 || p.Records[0].Time().Before(now.Add(-day)) {
		t.Fatalf("tiny kept the wrong record: %+v", p.Records)
	}
	rep, err = retention.Prune(ctx, st, cfg, retention.Options{Now: now})
	if err != nil || rep.Rooms.Removed != 0 || rep.Rooms.Kept != 4 {
		t.Fatalf("second run: %v %+v", err, rep.Rooms)
	}
}

// With room_archive 0 rooms without their own retention keep everything,
// while a room with one is still pruned.
func TestPruneRoomsDefaultForever(t *testing.T) {
	st := seedRooms(t, map[string]time.Duration{"lobby": 0, "short": 3 * day},
		map[string][]time.Duration{"lobby": {2000 * day, day}, "short": {10 * day, day}})
	cfg := config.Default("localhost").Retention
	cfg.RoomArchive = 0
	rep, err := retention.Prune(context.Background(), st, cfg, retention.Options{Now: now})
	if err != nil || rep.Rooms.Removed != 1 || rep.Rooms.Users != 1 || rep.RoomsDefault != 0 {
		t.Fatalf("prune: %v %+v", err, rep)
	}
	if l, s := roomCount(t, st, "lobby"), roomCount(t, st, "short"); l != 2 || s != 1 {
		t.Fatalf("lobby %d short %d, want 2 and 1", l, s)
	}
}

func TestRoomRetention(t *testing.T) {
	cfg := config.Retention{RoomArchive: config.Duration(90 * day), RoomArchiveMax: config.Duration(365 * day)}
	for _, c := range []struct{ room, want time.Duration }{
		{0, 90 * day}, {30 * day, 30 * day}, {time.Minute, day}, {2000 * day, 365 * day}, {365 * day, 365 * day},
	} {
		if got := retention.RoomRetention(cfg, store.Room{Retention: c.room}); got != c.want {
			t.Errorf("room retention %s: got %s, want %s", c.room, got, c.want)
		}
	}
}
