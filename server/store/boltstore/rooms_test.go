package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/store"
)

func TestRoomsCRUD(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	created := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

	if rooms, err := s.ListRooms(ctx); err != nil || len(rooms) != 0 {
		t.Fatalf("empty store lists %v %v", rooms, err)
	}
	if _, err := s.GetRoom(ctx, "lobby"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get before any room: %v", err)
	}
	lobby := store.Room{Name: "lobby", Title: "Lobby", Created: created, Public: true, Retention: 48 * time.Hour,
		Affiliations: map[string]store.Affiliation{"alice@x": store.AffOwner, "bob@x": store.AffMember},
		Nicks:        map[string]string{"bob@x": "bobby"}}
	for _, r := range []store.Room{lobby, {Name: "annex", Created: created, Plaintext: true}} {
		if err := s.CreateRoom(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateRoom(ctx, store.Room{Name: "lobby"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second lobby: %v", err)
	}
	if err := s.CreateRoom(ctx, store.Room{}); err == nil {
		t.Fatal("a room without a name was stored")
	}
	// Names compare as given: the module lowercases.
	if _, err := s.GetRoom(ctx, "Lobby"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Lobby is not lobby: %v", err)
	}
	got, err := s.GetRoom(ctx, "lobby")
	if err != nil || got.Title != "Lobby" || !got.Created.Equal(created) || got.Retention != 48*time.Hour ||
		got.Affiliation("alice@x") != store.AffOwner || got.Affiliation("carol@x") != store.AffNone || got.Nicks["bob@x"] != "bobby" {
		t.Fatalf("get lobby: %v %+v", err, got)
	}

	// A failing fn stores nothing, even what it changed before failing.
	boom := errors.New("boom")
	err = s.UpdateRoom(ctx, "lobby", func(r *store.Room) error {
		r.Title = "changed"
		r.Affiliations["carol@x"] = store.AffAdmin
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update error: %v", err)
	}
	if got, _ := s.GetRoom(ctx, "lobby"); got.Title != "Lobby" || got.Affiliation("carol@x") != store.AffNone {
		t.Fatalf("a failed update was stored: %+v", got)
	}
	err = s.UpdateRoom(ctx, "lobby", func(r *store.Room) error {
		r.Subject, r.Name = "hello", "renamed"
		r.Affiliations["carol@x"] = store.AffOutcast
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetRoom(ctx, "lobby"); got.Subject != "hello" || got.Name != "lobby" || got.Affiliation("carol@x") != store.AffOutcast {
		t.Fatalf("after update: %+v", got)
	}
	if err := s.UpdateRoom(ctx, "nowhere", func(*store.Room) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of an unknown room: %v", err)
	}

	rooms, err := s.ListRooms(ctx)
	if err != nil || len(rooms) != 2 || rooms[0].Name != "annex" || !rooms[0].Plaintext || rooms[1].Name != "lobby" {
		t.Fatalf("list: %v %+v", err, rooms)
	}

	rec := store.ArchiveRecord{ID: 100, With: "lobby@rooms.x/bobby", Stanza: []byte("<message/>")}
	if err := s.AppendRoomArchive(ctx, "lobby", rec); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRoom(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRoom(ctx, "lobby"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.GetRoom(ctx, "lobby"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	// The archive went with the room: a new room of that name starts empty.
	if err := s.CreateRoom(ctx, store.Room{Name: "lobby"}); err != nil {
		t.Fatal(err)
	}
	p, err := s.QueryRoomArchive(ctx, "lobby", store.ArchiveQuery{Max: 10})
	if err != nil || len(p.Records) != 0 || p.Count != 0 {
		t.Fatalf("archive after delete and create: %v %+v", err, p)
	}
	if err := s.AppendRoomArchive(ctx, "lobby", rec); err != nil {
		t.Fatalf("the deleted archive's ID is free again: %v", err)
	}
}

// seedRoom makes a room with n records, IDs 1..n, sent in turn by
// occupants a, b and c.
func seedRoom(t *testing.T, s *Store, name string, n int) {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateRoom(ctx, store.Room{Name: name}); err != nil {
		t.Fatal(err)
	}
	var recs []store.ArchiveRecord
	for i := 1; i <= n; i++ {
		nick := string(rune('a' + (i-1)%3))
		recs = append(recs, store.ArchiveRecord{ID: uint64(i), With: name + "@rooms.x/" + nick,
			Stanza: []byte(fmt.Sprintf("<message><body>%d</body></message>", i))})
	}
	if err := s.AppendRoomArchive(ctx, name, recs...); err != nil {
		t.Fatal(err)
	}
}

func TestRoomArchiveQuery(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	seedRoom(t, s, "lobby", 10)
	seedRoom(t, s, "annex", 2)

	if err := s.AppendRoomArchive(ctx, "lobby", store.ArchiveRecord{ID: 3, With: "lobby@rooms.x/a"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate ID: %v", err)
	}
	if err := s.AppendRoomArchive(ctx, "nowhere", store.ArchiveRecord{ID: 1}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("append to an unknown room: %v", err)
	}
	if _, err := s.QueryRoomArchive(ctx, "nowhere", store.ArchiveQuery{Max: 1}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("query of an unknown room: %v", err)
	}

	cases := []struct {
		name     string
		q        store.ArchiveQuery
		want     []uint64
		complete bool
		count    int
	}{
		{"first page", store.ArchiveQuery{Max: 4}, []uint64{1, 2, 3, 4}, false, 10},
		{"after", store.ArchiveQuery{Max: 4, After: 8}, []uint64{9, 10}, true, 10},
		{"before", store.ArchiveQuery{Max: 3, Before: 5}, []uint64{2, 3, 4}, false, 10},
		{"last page", store.ArchiveQuery{Max: 3, LastPage: true}, []uint64{8, 9, 10}, false, 10},
		{"occupant", store.ArchiveQuery{Max: 10, WithBare: "lobby@rooms.x/b"}, []uint64{2, 5, 8}, true, 3},
		{"occupant paged", store.ArchiveQuery{Max: 2, WithBare: "lobby@rooms.x/a", After: 1}, []uint64{4, 7}, false, 4},
		{"occupant last page", store.ArchiveQuery{Max: 2, WithBare: "lobby@rooms.x/a", LastPage: true}, []uint64{7, 10}, false, 4},
		{"occupant full", store.ArchiveQuery{Max: 10, WithFull: "lobby@rooms.x/c"}, []uint64{3, 6, 9}, true, 3},
		{"unknown occupant", store.ArchiveQuery{Max: 10, WithBare: "lobby@rooms.x/z"}, nil, true, 0},
		{"time range", store.ArchiveQuery{Max: 10, Start: 4, End: 6}, []uint64{4, 5, 6}, true, 3},
		{"ids", store.ArchiveQuery{Max: 10, IDs: []uint64{9, 2, 42}}, []uint64{2, 9}, true, 2},
	}
	for _, c := range cases {
		p, err := s.QueryRoomArchive(ctx, "lobby", c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(ids(p.Records), c.want) || p.Complete != c.complete || p.Count != c.count {
			t.Errorf("%s: got %v complete=%v count=%d, want %v %v %d", c.name, ids(p.Records), p.Complete, p.Count, c.want, c.complete, c.count)
		}
	}
	// Rooms do not see each other's records.
	p, err := s.QueryRoomArchive(ctx, "annex", store.ArchiveQuery{Max: 10})
	if err != nil || !slices.Equal(ids(p.Records), []uint64{1, 2}) || p.Records[1].With != "annex@rooms.x/b" {
		t.Fatalf("annex: %v %+v", err, p)
	}
	// Personal archives are apart too.
	if p, _ := s.QueryArchive(ctx, "lobby", store.ArchiveQuery{Max: 10}); len(p.Records) != 0 {
		t.Fatalf("a user named like the room sees its archive: %+v", p)
	}
}

func TestRoomArchiveReplace(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	seedRoom(t, s, "lobby", 5)
	tomb := []byte("<message><retracted xmlns='urn:xmpp:message-retract:1'/></message>")
	if err := s.ReplaceRoomArchive(ctx, "lobby", 2, tomb); err != nil {
		t.Fatal(err)
	}
	p, err := s.QueryRoomArchive(ctx, "lobby", store.ArchiveQuery{Max: 10, WithBare: "lobby@rooms.x/b"})
	if err != nil || len(p.Records) != 2 || p.Count != 2 {
		t.Fatalf("occupant index after replace: %v %+v", err, p)
	}
	if r := p.Records[0]; r.ID != 2 || r.With != "lobby@rooms.x/b" || string(r.Stanza) != string(tomb) {
		t.Fatalf("replaced record: %+v", r)
	}
	p, _ = s.QueryRoomArchive(ctx, "lobby", store.ArchiveQuery{Max: 10})
	if p.Count != 5 || string(p.Records[2].Stanza) != "<message><body>3</body></message>" {
		t.Fatalf("other records changed: %+v", p)
	}
	if err := s.ReplaceRoomArchive(ctx, "lobby", 99, tomb); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replace of a missing record: %v", err)
	}
	if err := s.ReplaceRoomArchive(ctx, "nowhere", 2, tomb); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replace in an unknown room: %v", err)
	}
	if err := s.CreateRoom(ctx, store.Room{Name: "empty"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceRoomArchive(ctx, "empty", 2, tomb); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replace in a room without archive: %v", err)
	}
}

func TestRoomArchivePrune(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// Each room has one record a day for 20 days, the newest a day old;
	// "big" has more records than one prune transaction takes.
	mk := func(name string, retention time.Duration, perDay int) {
		if err := s.CreateRoom(ctx, store.Room{Name: name, Retention: retention}); err != nil {
			t.Fatal(err)
		}
		var recs []store.ArchiveRecord
		for d := 20; d >= 1; d-- {
			for i := 0; i < perDay; i++ {
				recs = append(recs, store.ArchiveRecord{ID: uint64(now.Add(-time.Duration(d)*day).UnixNano()) + uint64(i),
					With: fmt.Sprintf("%s@rooms.x/n%d", name, i%2), Stanza: []byte("<message/>")})
			}
		}
		if err := s.AppendRoomArchive(ctx, name, recs...); err != nil {
			t.Fatal(err)
		}
	}
	mk("short", 5*day, 1) // keeps days 1..5 (day 5 is at the cutoff: kept)
	mk("default", 0, 1)   // server default 10 days: keeps 1..10
	mk("forever", 1000*day, 1)
	mk("big", 2*day, 400) // 18 days * 400 = 7200 removed, 800 kept
	if err := s.CreateRoom(ctx, store.Room{Name: "empty", Retention: day}); err != nil {
		t.Fatal(err)
	}
	cutoff := func(r store.Room) time.Time {
		if r.Retention == 0 {
			return now.Add(-10 * day)
		}
		return now.Add(-r.Retention)
	}
	counts := func() map[string]int {
		out := map[string]int{}
		for _, n := range []string{"short", "default", "forever", "big", "empty"} {
			p, err := s.QueryRoomArchive(ctx, n, store.ArchiveQuery{})
			if err != nil {
				t.Fatal(err)
			}
			out[n] = p.Count
		}
		return out
	}
	before := counts()

	var calls []int
	progress := func(done, total, removed int) {
		if total != 5 {
			t.Errorf("progress total %d, want 5 rooms", total)
		}
		calls = append(calls, done)
	}
	st, err := s.PruneRoomArchive(ctx, cutoff, true, progress)
	if err != nil {
		t.Fatal(err)
	}
	want := store.PruneStats{Users: 3, Removed: 15 + 10 + 7200, Kept: 5 + 10 + 20 + 800}
	if st != want {
		t.Fatalf("dry run stats %+v, want %+v", st, want)
	}
	if !slices.Equal(calls, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("progress calls %v", calls)
	}
	if got := counts(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("a dry run removed records: %v, was %v", got, before)
	}

	st, err = s.PruneRoomArchive(ctx, cutoff, false, nil)
	if err != nil || st != want {
		t.Fatalf("prune: %v %+v, want %+v", err, st, want)
	}
	got := counts()
	if got["short"] != 5 || got["default"] != 10 || got["forever"] != 20 || got["big"] != 800 || got["empty"] != 0 {
		t.Fatalf("after prune: %v", got)
	}
	// The occupant index and counters follow the records.
	p, err := s.QueryRoomArchive(ctx, "big", store.ArchiveQuery{WithBare: "big@rooms.x/n1", Max: 1000})
	if err != nil || p.Count != 400 || len(p.Records) != 400 || p.Records[0].Time().Before(now.Add(-2*day)) {
		t.Fatalf("big's occupant after prune: %v count=%d len=%d", err, p.Count, len(p.Records))
	}
	st, err = s.PruneRoomArchive(ctx, cutoff, false, nil)
	if err != nil || st.Removed != 0 || st.Users != 0 {
		t.Fatalf("second prune: %v %+v", err, st)
	}
	// A zero cutoff keeps everything.
	st, err = s.PruneRoomArchive(ctx, func(store.Room) time.Time { return time.Time{} }, false, nil)
	if err != nil || st.Removed != 0 || st.Kept != 835 {
		t.Fatalf("zero cutoff: %v %+v", err, st)
	}
}

func TestAudit(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	if es, err := s.ListAudit(ctx, 0); err != nil || len(es) != 0 {
		t.Fatalf("empty audit: %v %v", es, err)
	}
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	// Appended out of time order, and two in the same instant.
	entries := []store.AuditEntry{
		{Time: t0.Add(2 * time.Minute), Actor: "alice@x", Action: "room.mode", Target: "lobby@rooms.x", Old: "encrypted", New: "plaintext"},
		{Time: t0, Actor: "cli:root", Action: "room.retention", Target: "lobby@rooms.x", New: "30d"},
		{Time: t0.Add(2 * time.Minute), Actor: "bob@x", Action: "room.destroy", Target: "annex@rooms.x"},
		{Time: t0.Add(time.Minute), Actor: "alice@x", Action: "room.create", Target: "annex@rooms.x"},
	}
	for _, e := range entries {
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	actions := func(es []store.AuditEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Action)
		}
		return out
	}
	all, err := s.ListAudit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"room.retention", "room.create", "room.mode", "room.destroy"}; !slices.Equal(actions(all), want) {
		t.Fatalf("order %v, want %v", actions(all), want)
	}
	if e := all[2]; e.Actor != "alice@x" || e.Old != "encrypted" || e.New != "plaintext" || !e.Time.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("entry round trip: %+v", e)
	}
	last2, err := s.ListAudit(ctx, 2)
	if err != nil || !slices.Equal(actions(last2), []string{"room.mode", "room.destroy"}) {
		t.Fatalf("limit 2: %v %v", err, actions(last2))
	}
	if many, _ := s.ListAudit(ctx, 100); len(many) != 4 {
		t.Fatalf("limit above the size: %d entries", len(many))
	}
	// A zero time means now.
	before := time.Now()
	if err := s.AppendAudit(ctx, store.AuditEntry{Actor: "cli:root", Action: "room.create", Target: "x@rooms.x"}); err != nil {
		t.Fatal(err)
	}
	last, _ := s.ListAudit(ctx, 1)
	if len(last) != 1 || last[0].Target != "x@rooms.x" || last[0].Time.Before(before.Add(-time.Second)) {
		t.Fatalf("entry without a time: %+v", last)
	}
}

// TestRoomsSurviveReopen closes the store and opens the file again: rooms,
// their archives (with a replaced record) and the audit log are on disk.
func TestRoomsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seedRoom(t, s, "lobby", 6)
	if err := s.UpdateRoom(ctx, "lobby", func(r *store.Room) error { r.Subject = "kept"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceRoomArchive(ctx, "lobby", 4, []byte("<tomb/>")); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, store.AuditEntry{Actor: "alice@x", Action: "room.mode", Target: "lobby@rooms.x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.GetRoom(ctx, "lobby")
	if err != nil || r.Subject != "kept" {
		t.Fatalf("room after reopen: %v %+v", err, r)
	}
	p, err := s.QueryRoomArchive(ctx, "lobby", store.ArchiveQuery{Max: 10, WithBare: "lobby@rooms.x/a"})
	if err != nil || !slices.Equal(ids(p.Records), []uint64{1, 4}) || string(p.Records[1].Stanza) != "<tomb/>" {
		t.Fatalf("archive after reopen: %v %+v", err, p)
	}
	es, err := s.ListAudit(ctx, 0)
	if err != nil || len(es) != 1 || es[0].Action != "room.mode" {
		t.Fatalf("audit after reopen: %v %+v", err, es)
	}
}
