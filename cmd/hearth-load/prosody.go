package main

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// writeProsodyAccounts writes accounts in the format Prosody's
// mod_auth_internal_hashed keeps with storage "internal" (one Lua table per
// account): registering thousands through prosodyctl starts Lua once per
// account and takes minutes.
func writeProsodyAccounts(o *options) error {
	if o.out == "" {
		return errors.New("prosody-accounts needs --out DIR")
	}
	if err := os.MkdirAll(o.out, 0o750); err != nil {
		return err
	}
	var wg sync.WaitGroup
	jobs := make(chan int)
	errc := make(chan error, 1)
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := writeProsodyAccount(o, o.prefix+fmt.Sprint(i)); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 1; i <= o.users; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func writeProsodyAccount(o *options, user string) error {
	// Prosody's salts are UUID strings; any printable string works.
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	salt := hex.EncodeToString(b)
	salted, err := pbkdf2.Key(sha1.New, o.password, []byte(salt), o.iterations, sha1.Size)
	if err != nil {
		return err
	}
	mac := func(key []byte, s string) []byte {
		m := hmac.New(sha1.New, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	ck := sha1.Sum(mac(salted, "Client Key"))
	sk := mac(salted, "Server Key")
	data := fmt.Sprintf("return {\n\t[\"iteration_count\"] = %d;\n\t[\"salt\"] = %q;\n\t[\"server_key\"] = %q;\n\t[\"stored_key\"] = %q;\n};\n",
		o.iterations, salt, hex.EncodeToString(sk), hex.EncodeToString(ck[:]))
	return os.WriteFile(filepath.Join(o.out, user+".dat"), []byte(data), 0o640)
}
