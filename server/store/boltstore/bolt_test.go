package boltstore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/merveilles/hearth/server/store"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hearth.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestSchemaVersionIsRecordedAndNewerIsRefused(t *testing.T) {
	s, path := open(t)
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	_ = db.Update(func(tx *bolt.Tx) error {
		got = string(tx.Bucket(bucketMeta).Get(keySchema))
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("999"))
	})
	db.Close()
	if got != "1" {
		t.Fatalf("schema version %q, want 1", got)
	}
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opening a newer schema: %v", err)
	}
}

func TestSecondOpenReportsLocked(t *testing.T) {
	_, path := open(t)
	_, err := Open(path)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestAccountsLifecycleAndDeleteRemovesData(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	a := store.Account{Localpart: "alice", Role: store.RoleMember}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, a); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := s.UpdateAccount(ctx, "alice", func(a *store.Account) error { a.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAccount(ctx, "alice")
	if err != nil || !got.Disabled {
		t.Fatalf("after disable: %+v %v", got, err)
	}
	if err := s.PushOffline(ctx, "alice", []byte("<message/>"), 10); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUserData(ctx, "alice", "vcard", "current", []byte("<vCard/>")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateRosterItem(ctx, "alice", "bob@x", func(it *store.RosterItem) (bool, bool, error) {
		it.InRoster = true
		return true, true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccount(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if n, _ := s.CountOffline(ctx, "alice"); n != 0 {
		t.Errorf("offline messages survive deletion: %d", n)
	}
	if _, err := s.GetUserData(ctx, "alice", "vcard", "current"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("vcard survives deletion: %v", err)
	}
	if _, items, _ := s.Roster(ctx, "alice"); len(items) != 0 {
		t.Errorf("roster survives deletion: %v", items)
	}
	if err := s.DeleteAccount(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
}

func TestRosterVersionOnlyMovesOnChange(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	set := func(changed bool) uint64 {
		v, err := s.UpdateRosterItem(ctx, "alice", "bob@x", func(it *store.RosterItem) (bool, bool, error) {
			it.InRoster = true
			return true, changed, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v1 := set(true)
	v2 := set(false)
	v3 := set(true)
	if v1 == 0 || v2 != v1 || v3 != v1+1 {
		t.Fatalf("versions %d %d %d", v1, v2, v3)
	}
	v4, err := s.UpdateRosterItem(ctx, "alice", "bob@x", func(it *store.RosterItem) (bool, bool, error) { return false, true, nil })
	if err != nil || v4 != v3+1 {
		t.Fatalf("delete: %d %v", v4, err)
	}
	if _, err := s.RosterItem(ctx, "alice", "bob@x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted item: %v", err)
	}
}

func TestOfflineQueueCapAndOrder(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	for _, m := range []string{"1", "2", "3"} {
		if err := s.PushOffline(ctx, "bob", []byte(m), 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PushOffline(ctx, "bob", []byte("4"), 3); !errors.Is(err, store.ErrQueueFull) {
		t.Fatalf("over the cap: %v", err)
	}
	msgs, err := s.PopOffline(ctx, "bob")
	if err != nil || len(msgs) != 3 || string(msgs[0]) != "1" || string(msgs[2]) != "3" {
		t.Fatalf("pop: %q %v", msgs, err)
	}
	if n, _ := s.CountOffline(ctx, "bob"); n != 0 {
		t.Fatalf("after pop: %d", n)
	}
}
