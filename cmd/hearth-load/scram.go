package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
)

// saltCache keeps SaltedPassword per (user, salt, iterations), as real
// clients do: the PBKDF2 cost belongs to the server's account creation,
// not to every login, and paying it in the tool would measure the tool.
type saltCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newSaltCache() *saltCache { return &saltCache{m: make(map[string][]byte)} }

func (c *saltCache) get(h func() hash.Hash, mech, user, password string, salt []byte, iters int) ([]byte, error) {
	key := mech + "\x00" + user + "\x00" + string(salt) + "\x00" + strconv.Itoa(iters)
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := pbkdf2.Key(h, password, salt, iters, h().Size())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[key] = v
	c.mu.Unlock()
	return v, nil
}

// scramClient is one SCRAM exchange (RFC 5802), without channel binding.
type scramClient struct {
	h          func() hash.Hash
	mech       string
	user, pass string
	cache      *saltCache

	nonce       string
	clientFirst string // bare
	serverSig   []byte
}

func newScram(mech, user, pass string, cache *saltCache) (*scramClient, error) {
	var h func() hash.Hash
	switch mech {
	case "SCRAM-SHA-1":
		h = sha1.New
	case "SCRAM-SHA-256":
		h = sha256.New
	default:
		return nil, fmt.Errorf("unsupported mechanism %q", mech)
	}
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return &scramClient{h: h, mech: mech, user: user, pass: pass, cache: cache, nonce: base64.RawStdEncoding.EncodeToString(b)}, nil
}

func scramName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

func (c *scramClient) first() []byte {
	c.clientFirst = "n=" + scramName(c.user) + ",r=" + c.nonce
	return []byte("n,," + c.clientFirst)
}

// final answers the server-first message.
func (c *scramClient) final(serverFirst []byte) ([]byte, error) {
	var nonce string
	var salt []byte
	iters := 0
	for _, f := range strings.Split(string(serverFirst), ",") {
		if len(f) < 2 || f[1] != '=' {
			continue
		}
		switch f[0] {
		case 'r':
			nonce = f[2:]
		case 's':
			var err error
			if salt, err = base64.StdEncoding.DecodeString(f[2:]); err != nil {
				return nil, fmt.Errorf("scram: bad salt: %w", err)
			}
		case 'i':
			iters, _ = strconv.Atoi(f[2:])
		}
	}
	if !strings.HasPrefix(nonce, c.nonce) || len(salt) == 0 || iters <= 0 {
		return nil, fmt.Errorf("scram: bad server-first message %q", serverFirst)
	}
	salted, err := c.cache.get(c.h, c.mech, c.user, c.pass, salt, iters)
	if err != nil {
		return nil, err
	}
	clientKey := c.hmac(salted, "Client Key")
	hs := c.h()
	hs.Write(clientKey)
	storedKey := hs.Sum(nil)
	withoutProof := "c=biws,r=" + nonce
	authMsg := c.clientFirst + "," + string(serverFirst) + "," + withoutProof
	sig := c.hmac(storedKey, authMsg)
	proof := make([]byte, len(clientKey))
	subtle.XORBytes(proof, clientKey, sig)
	c.serverSig = c.hmac(c.hmac(salted, "Server Key"), authMsg)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verify checks the server's signature from the success message.
func (c *scramClient) verify(serverFinal []byte) error {
	v, ok := bytes.CutPrefix(serverFinal, []byte("v="))
	if !ok {
		return fmt.Errorf("scram: unexpected server-final %q", serverFinal)
	}
	sig, err := base64.StdEncoding.DecodeString(string(v))
	if err != nil || !hmac.Equal(sig, c.serverSig) {
		return errors.New("scram: the server's signature does not match")
	}
	return nil
}

func (c *scramClient) hmac(key []byte, msg string) []byte {
	m := hmac.New(c.h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
