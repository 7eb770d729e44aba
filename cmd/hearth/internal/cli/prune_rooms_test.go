package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
)

// TestPruneRoomArchives: hearth prune takes room archive messages past
// each room's retention (its own, or the 90 day default) and says so.
func TestPruneRoomArchives(t *testing.T) {
	data := seedPrune(t)
	st, err := boltstore.Open(filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := func(age time.Duration, n int) uint64 { return uint64(time.Now().Add(-age).UnixNano()) + uint64(n) }
	day := 24 * time.Hour
	for name, ages := range map[string][]time.Duration{
		"lobby": {120 * day, 100 * day, 5 * day}, // default 90d: two go
		"short": {10 * day, time.Hour},           // its own 7d: one goes
		"quiet": {time.Hour},
	} {
		r := store.Room{Name: name}
		if name == "short" {
			r.Retention = 7 * day
		}
		if err := st.CreateRoom(ctx, r); err != nil {
			t.Fatal(err)
		}
		for i, age := range ages {
			if err := st.AppendRoomArchive(ctx, name, store.ArchiveRecord{ID: at(age, i), With: name + "@rooms.localhost/n", Stanza: []byte("<message/>")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	st.Close()

	code, out, errOut := run(t, "", Prune, "--data", data, "--dry-run")
	want := "rooms: would remove 3 messages older than each room's retention (default 90d) from 2 rooms; 3 messages kept"
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "archive: would remove 3 messages") {
		t.Fatalf("dry run: %d, want %q in\n%s%s", code, want, out, errOut)
	}
	code, out, errOut = run(t, "", Prune, "--data", data)
	if code != 0 || !strings.Contains(out, "rooms: removed 3 messages older than each room's retention (default 90d) from 2 rooms; 3 messages kept") {
		t.Fatalf("prune: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, "", Prune, "--data", data)
	if code != 0 || !strings.Contains(out, "rooms: removed 0 messages") || !strings.Contains(out, "from 0 rooms; 3 messages kept") {
		t.Fatalf("second prune: %d\n%s", code, out)
	}

	st, err = boltstore.Open(filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for name, n := range map[string]int{"lobby": 1, "short": 1, "quiet": 1} {
		p, err := st.QueryRoomArchive(ctx, name, store.ArchiveQuery{})
		if err != nil || p.Count != n {
			t.Fatalf("%s after prune: %v %d, want %d", name, err, p.Count, n)
		}
	}
}

// The progress line counts rooms, not users, for room archives.
func TestPruneProgressNamesRooms(t *testing.T) {
	var b strings.Builder
	p := &pruneProgress{w: &b}
	p.update("rooms", 1, 3, 0)
	p.last = time.Now().Add(-time.Minute)
	p.update("rooms", 2, 3, 5)
	if got := b.String(); got != "rooms: 2/3 rooms, 5 messages so far\n" {
		t.Fatalf("progress %q", got)
	}
}
