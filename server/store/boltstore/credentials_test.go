package boltstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/merveilles/hearth/server/admin"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/server/xmpp/sasl"
)

// Two accounts with the same password get different salts (so equal
// passwords do not show as equal keys), and the database file holds neither
// the password nor any base64 or hex encoding of it.
func TestStoredCredentialsAreSaltedAndHoldNoPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Random and long, so it cannot turn up in the file by chance.
	rnd := make([]byte, 24)
	_, _ = rand.Read(rnd)
	pw := base64.RawURLEncoding.EncodeToString(rnd)
	ctx := context.Background()
	users := []string{"alice", "bob"}
	for _, u := range users {
		// admin.NewAccount is what dev, "admin user add" and import use.
		a, err := admin.NewAccount(u, pw, store.RoleMember, sasl.MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range passwordForms(pw) {
		if bytes.Contains(raw, []byte(bad)) {
			t.Errorf("the database file contains the password as %q", bad)
		}
	}

	s, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	accts := make([]store.Account, len(users))
	for i, u := range users {
		if accts[i], err = s.GetAccount(ctx, u); err != nil {
			t.Fatal(err)
		}
		// The keys really are for this password, so a difference below is
		// salting and not garbage.
		if !sasl.CheckPassword(accts[i], pw) {
			t.Fatalf("%s: the stored keys do not verify the password", u)
		}
	}
	for _, hash := range []string{"SHA-256", "SHA-1"} {
		a, b := accts[0].Scram[hash], accts[1].Scram[hash]
		if len(a.Salt) < 16 || len(b.Salt) < 16 {
			t.Fatalf("%s salts of %d and %d bytes, want at least 16", hash, len(a.Salt), len(b.Salt))
		}
		if bytes.Equal(a.Salt, b.Salt) {
			t.Errorf("%s: alice and bob have the same salt %x", hash, a.Salt)
		}
		if bytes.Equal(a.StoredKey, b.StoredKey) || bytes.Equal(a.ServerKey, b.ServerKey) {
			t.Errorf("%s: the same password gave the same stored keys", hash)
		}
		// The search for base64 above would find stored bytes: the salt,
		// stored as base64 in the account's JSON, is there.
		if !bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(a.Salt))) {
			t.Errorf("%s: alice's salt is not in the file as base64; the password search proves nothing", hash)
		}
	}
}

// passwordForms lists the password in clear, in hex, and in base64 at each
// of the three byte alignments it could have inside a longer encoded value
// (with the characters that mix in neighbouring bytes cut off).
func passwordForms(pw string) []string {
	forms := []string{pw, hex.EncodeToString([]byte(pw))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for k, skip := range []int{0, 2, 3} {
			e := enc.EncodeToString(append(make([]byte, k), pw...))
			if f := e[skip : len(e)-4]; !slices.Contains(forms, f) {
				forms = append(forms, f)
			}
		}
	}
	return forms
}
