package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/merveilles/hearth/server/store"
)

// Rooms live under one top-level bucket, a sub-bucket per room, so deleting
// a room deletes its archive with it:
//
//	rooms/<name>/room   the room as JSON
//	rooms/<name>/mam    the room's archive, laid out as a user's (m, w, c)
var (
	bucketRooms = []byte("rooms")
	keyRoom     = []byte("room")
)

var _ store.Rooms = (*Store)(nil)

// errNoRoomName refuses the empty name, which bbolt cannot use as a bucket.
var errNoRoomName = errors.New("room name is empty")

// roomBucket returns the room's bucket, or store.ErrNotFound.
func roomBucket(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	if name == "" {
		return nil, errNoRoomName
	}
	rb := tx.Bucket(bucketRooms)
	if rb == nil {
		return nil, fmt.Errorf("room %q: %w", name, store.ErrNotFound)
	}
	b := rb.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("room %q: %w", name, store.ErrNotFound)
	}
	return b, nil
}

func decodeRoom(name string, raw []byte) (store.Room, error) {
	var r store.Room
	if raw == nil {
		return r, fmt.Errorf("room %q has no settings record", name)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("room %q: %w", name, err)
	}
	return r, nil
}

// CreateRoom stores a new room; store.ErrExists if the name is taken.
func (s *Store) CreateRoom(ctx context.Context, r store.Room) error {
	if r.Name == "" {
		return fmt.Errorf("create room: %w", errNoRoomName)
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("create room %q: %w", r.Name, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		rb, err := tx.CreateBucketIfNotExists(bucketRooms)
		if err != nil {
			return err
		}
		if rb.Bucket([]byte(r.Name)) != nil {
			return store.ErrExists
		}
		b, err := rb.CreateBucket([]byte(r.Name))
		if err != nil {
			return err
		}
		return b.Put(keyRoom, raw)
	})
	if err != nil {
		return fmt.Errorf("create room %q: %w", r.Name, err)
	}
	return nil
}

// GetRoom returns the room or store.ErrNotFound.
func (s *Store) GetRoom(ctx context.Context, name string) (store.Room, error) {
	var r store.Room
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := roomBucket(tx, name)
		if err != nil {
			return err
		}
		r, err = decodeRoom(name, b.Get(keyRoom))
		return err
	})
	return r, err
}

// UpdateRoom applies fn to the stored room in one transaction; when fn
// fails nothing is written. The name cannot change: it keys the archive.
func (s *Store) UpdateRoom(ctx context.Context, name string, fn func(*store.Room) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := roomBucket(tx, name)
		if err != nil {
			return err
		}
		r, err := decodeRoom(name, b.Get(keyRoom))
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		r.Name = name
		raw, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("room %q: %w", name, err)
		}
		return b.Put(keyRoom, raw)
	})
}

// DeleteRoom removes the room and its archive.
func (s *Store) DeleteRoom(ctx context.Context, name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if _, err := roomBucket(tx, name); err != nil {
			return err
		}
		return tx.Bucket(bucketRooms).DeleteBucket([]byte(name))
	})
}

// ListRooms returns every room sorted by name.
func (s *Store) ListRooms(ctx context.Context) ([]store.Room, error) {
	var out []store.Room
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRooms)
		if rb == nil {
			return nil
		}
		return rb.ForEachBucket(func(k []byte) error {
			r, err := decodeRoom(string(k), rb.Bucket(k).Get(keyRoom))
			if err != nil {
				return err
			}
			r.Name = string(k) // the key is what the archive hangs off
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	return out, nil
}
