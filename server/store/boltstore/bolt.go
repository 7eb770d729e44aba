// Package boltstore implements server/store on a single bbolt file.
//
// Layout: bucket "meta" holds the schema version; "accounts" maps a
// localpart to its JSON account; each user has a bucket "u/<localpart>" with
// nested buckets for roster, offline queue and module documents, so deleting
// an account is one bucket delete and nothing of it is left behind.
package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/merveilles/hearth/server/store"
)

// SchemaVersion is the layout this code reads and writes.
const SchemaVersion = 1

var (
	bucketMeta     = []byte("meta")
	bucketAccounts = []byte("accounts")
	bucketRoster   = []byte("roster")
	bucketOffline  = []byte("offline")
	keySchema      = []byte("schema")
	keyRosterVer   = []byte("\x00ver")
)

// ErrLocked means another process (usually the running daemon) holds the
// database open.
var ErrLocked = errors.New("the database is in use by another process (is hearth running?)")

// Store is the bbolt implementation of store.Store.
type Store struct {
	db *bolt.DB
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the database at path and checks its schema version.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.checkSchema(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) checkSchema() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketAccounts); err != nil {
			return err
		}
		raw := meta.Get(keySchema)
		if raw == nil {
			return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
		}
		v, err := strconv.Atoi(string(raw))
		if err != nil {
			return fmt.Errorf("unreadable schema version %q", raw)
		}
		if v > SchemaVersion {
			return fmt.Errorf("database schema version %d is newer than this hearth understands (%d); install the newer hearth again", v, SchemaVersion)
		}
		// Older versions would be migrated here, one step at a time.
		return nil
	})
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB exposes the bbolt handle to sibling backends (e.g. future archives).
func (s *Store) DB() *bolt.DB { return s.db }

func userBucketName(user string) []byte { return []byte("u/" + user) }

func userBucket(tx *bolt.Tx, user string, create bool) (*bolt.Bucket, error) {
	if !create {
		return tx.Bucket(userBucketName(user)), nil
	}
	return tx.CreateBucketIfNotExists(userBucketName(user))
}

func subBucket(tx *bolt.Tx, user string, name []byte, create bool) (*bolt.Bucket, error) {
	ub, err := userBucket(tx, user, create)
	if err != nil || ub == nil {
		return nil, err
	}
	if !create {
		return ub.Bucket(name), nil
	}
	return ub.CreateBucketIfNotExists(name)
}

// --- accounts ---

// CreateAccount stores a new account; store.ErrExists if the name is taken.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		if b.Get([]byte(a.Localpart)) != nil {
			return fmt.Errorf("account %q: %w", a.Localpart, store.ErrExists)
		}
		return b.Put([]byte(a.Localpart), raw)
	})
}

// PutAccounts creates or replaces accounts in one transaction.
func (s *Store) PutAccounts(ctx context.Context, as []store.Account) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		for _, a := range as {
			raw, err := json.Marshal(a)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(a.Localpart), raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetAccount returns the account or store.ErrNotFound.
func (s *Store) GetAccount(ctx context.Context, localpart string) (store.Account, error) {
	var a store.Account
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketAccounts).Get([]byte(localpart))
		if raw == nil {
			return fmt.Errorf("account %q: %w", localpart, store.ErrNotFound)
		}
		return json.Unmarshal(raw, &a)
	})
	return a, err
}

// UpdateAccount changes an existing account in place.
func (s *Store) UpdateAccount(ctx context.Context, localpart string, fn func(*store.Account) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		raw := b.Get([]byte(localpart))
		if raw == nil {
			return fmt.Errorf("account %q: %w", localpart, store.ErrNotFound)
		}
		var a store.Account
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		if err := fn(&a); err != nil {
			return err
		}
		a.Localpart = localpart
		out, err := json.Marshal(a)
		if err != nil {
			return err
		}
		return b.Put([]byte(localpart), out)
	})
}

// DeleteAccount removes the account and all of its data.
func (s *Store) DeleteAccount(ctx context.Context, localpart string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		if b.Get([]byte(localpart)) == nil {
			return fmt.Errorf("account %q: %w", localpart, store.ErrNotFound)
		}
		if err := b.Delete([]byte(localpart)); err != nil {
			return err
		}
		if tx.Bucket(userBucketName(localpart)) != nil {
			return tx.DeleteBucket(userBucketName(localpart))
		}
		return nil
	})
}

// ListAccounts returns every account sorted by localpart.
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	var out []store.Account
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			var a store.Account
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("account %q: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// --- roster ---

// Roster returns the roster version and every item (including pending-only
// entries, which callers filter by InRoster).
func (s *Store) Roster(ctx context.Context, user string) (uint64, []store.RosterItem, error) {
	var ver uint64
	var items []store.RosterItem
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := subBucket(tx, user, bucketRoster, false)
		if b == nil {
			return nil
		}
		if v := b.Get(keyRosterVer); len(v) == 8 {
			ver = binary.BigEndian.Uint64(v)
		}
		return b.ForEach(func(k, v []byte) error {
			if k[0] == 0 {
				return nil
			}
			var it store.RosterItem
			if err := json.Unmarshal(v, &it); err != nil {
				return err
			}
			items = append(items, it)
			return nil
		})
	})
	sort.Slice(items, func(i, j int) bool { return items[i].JID < items[j].JID })
	return ver, items, err
}

// RosterItem returns one item or store.ErrNotFound.
func (s *Store) RosterItem(ctx context.Context, user, jid string) (store.RosterItem, error) {
	var it store.RosterItem
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := subBucket(tx, user, bucketRoster, false)
		if b == nil {
			return store.ErrNotFound
		}
		raw := b.Get([]byte(jid))
		if raw == nil {
			return store.ErrNotFound
		}
		return json.Unmarshal(raw, &it)
	})
	return it, err
}

// UpdateRosterItem applies fn to one item in a durable transaction.
func (s *Store) UpdateRosterItem(ctx context.Context, user, jid string, fn func(*store.RosterItem) (bool, bool, error)) (uint64, error) {
	var ver uint64
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b, err := subBucket(tx, user, bucketRoster, true)
		if err != nil {
			return err
		}
		if v := b.Get(keyRosterVer); len(v) == 8 {
			ver = binary.BigEndian.Uint64(v)
		}
		it := store.RosterItem{JID: jid, Subscription: "none"}
		existed := false
		if raw := b.Get([]byte(jid)); raw != nil {
			existed = true
			if err := json.Unmarshal(raw, &it); err != nil {
				return err
			}
		}
		keep, changed, err := fn(&it)
		if err != nil || !changed {
			return err
		}
		ver++
		var vb [8]byte
		binary.BigEndian.PutUint64(vb[:], ver)
		if err := b.Put(keyRosterVer, vb[:]); err != nil {
			return err
		}
		if !keep {
			if existed {
				return b.Delete([]byte(jid))
			}
			return nil
		}
		it.JID = jid
		raw, err := json.Marshal(it)
		if err != nil {
			return err
		}
		return b.Put([]byte(jid), raw)
	})
	return ver, err
}

// --- offline ---

// PushOffline durably appends a stanza to the user's offline queue.
func (s *Store) PushOffline(ctx context.Context, user string, stanza []byte, max int) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b, err := subBucket(tx, user, bucketOffline, true)
		if err != nil {
			return err
		}
		if max > 0 && b.Stats().KeyN >= max {
			return store.ErrQueueFull
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], seq)
		return b.Put(k[:], stanza)
	})
}

// PopOffline removes and returns the whole queue, oldest first.
func (s *Store) PopOffline(ctx context.Context, user string) ([][]byte, error) {
	var out [][]byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		ub, _ := userBucket(tx, user, false)
		if ub == nil || ub.Bucket(bucketOffline) == nil {
			return nil
		}
		err := ub.Bucket(bucketOffline).ForEach(func(k, v []byte) error {
			out = append(out, append([]byte(nil), v...))
			return nil
		})
		if err != nil {
			return err
		}
		return ub.DeleteBucket(bucketOffline)
	})
	return out, err
}

// CountOffline returns the queue length.
func (s *Store) CountOffline(ctx context.Context, user string) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := subBucket(tx, user, bucketOffline, false)
		if b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// --- per-user documents ---

func dataBucketName(kind string) []byte { return []byte("d/" + kind) }

// GetUserData returns a document or store.ErrNotFound.
func (s *Store) GetUserData(ctx context.Context, user, kind, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := subBucket(tx, user, dataBucketName(kind), false)
		if b == nil {
			return store.ErrNotFound
		}
		v := b.Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// PutUserData durably stores a document.
func (s *Store) PutUserData(ctx context.Context, user, kind, key string, value []byte) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b, err := subBucket(tx, user, dataBucketName(kind), true)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), value)
	})
}

// DeleteUserData removes a document; absent is not an error.
func (s *Store) DeleteUserData(ctx context.Context, user, kind, key string) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b, _ := subBucket(tx, user, dataBucketName(kind), false)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
}

// ListUserData returns every document of a kind.
func (s *Store) ListUserData(ctx context.Context, user, kind string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := subBucket(tx, user, dataBucketName(kind), false)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}
