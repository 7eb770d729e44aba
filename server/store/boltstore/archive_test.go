package boltstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/merveilles/hearth/server/store"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ids(recs []store.ArchiveRecord) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func TestArchiveStore(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	var recs []store.ArchiveRecord
	for i := uint64(1); i <= 10; i++ {
		with := "bob@x/a"
		if i%2 == 0 {
			with = "bob@x/b"
		}
		if i > 8 {
			with = "carol@x"
		}
		recs = append(recs, store.ArchiveRecord{ID: i * 100, With: with, Stanza: []byte("<message/>")})
	}
	if err := s.AppendArchive(ctx, "alice", recs...); err != nil {
		t.Fatal(err)
	}
	// An ID is never overwritten.
	err := s.AppendArchive(ctx, "alice", store.ArchiveRecord{ID: 300, With: "eve@x", Stanza: []byte("<forged/>")})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	q := func(aq store.ArchiveQuery) store.ArchivePage {
		t.Helper()
		p, err := s.QueryArchive(ctx, "alice", aq)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := q(store.ArchiveQuery{Max: 100}); len(p.Records) != 10 || p.Count != 10 || !p.Complete || string(p.Records[2].Stanza) != "<message/>" {
		t.Fatalf("all: %+v", p)
	}
	if p := q(store.ArchiveQuery{WithBare: "bob@x", WithFull: "bob@x/b", Max: 2}); len(p.Records) != 2 || p.Count != 4 || p.Complete || p.Records[0].ID != 200 {
		t.Fatalf("full JID: %+v", p)
	}
	if p := q(store.ArchiveQuery{WithBare: "bob@x", Max: 3, LastPage: true}); len(p.Records) != 3 || p.Records[2].ID != 800 || p.Records[0].ID != 600 || p.Complete || p.Count != 8 {
		t.Fatalf("bob last page: %+v", p)
	}
	if p := q(store.ArchiveQuery{Start: 250, End: 700, Max: 100}); len(p.Records) != 5 || p.Count != 5 || p.Records[0].ID != 300 {
		t.Fatalf("time range: %v count %d", ids(p.Records), p.Count)
	}
	if p := q(store.ArchiveQuery{IDs: []uint64{900, 100, 555}, Max: 100}); len(p.Records) != 2 || p.Records[0].ID != 100 || p.Count != 2 {
		t.Fatalf("ids: %v", ids(p.Records))
	}
	if p := q(store.ArchiveQuery{Before: 100, Max: 5}); len(p.Records) != 0 || !p.Complete {
		t.Fatalf("before the first: %+v", p)
	}
	if p := q(store.ArchiveQuery{WithBare: "nobody@x", Max: 5}); len(p.Records) != 0 || p.Count != 0 {
		t.Fatalf("unknown contact: %+v", p)
	}
	// Deleting the account deletes its archive.
	if err := s.CreateAccount(ctx, store.Account{Localpart: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if p := q(store.ArchiveQuery{Max: 100}); len(p.Records) != 0 {
		t.Fatalf("archive survived the account: %+v", p)
	}
}
