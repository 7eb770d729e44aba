// Package tlscert provides the certificate hearth serves: loaded from files
// (which ACME renews) or self-signed on first start, and reloadable without
// dropping connections.
package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/merveilles/hearth/internal/selfsigned"
)

// Holder serves the current certificate and can reload it from disk.
type Holder struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// Load reads a certificate pair.
func Load(certFile, keyFile string) (*Holder, error) {
	h := &Holder{certFile: certFile, keyFile: keyFile}
	if err := h.Reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// Reload re-reads the files; on error the previous certificate stays.
func (h *Holder) Reload() error {
	c, err := tls.LoadX509KeyPair(h.certFile, h.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", h.certFile, err)
	}
	h.cur.Store(&c)
	return nil
}

// TLSConfig returns a server configuration: TLS 1.2 or newer, the
// certificate from this holder.
func (h *Holder) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return h.cur.Load(), nil
		},
	}
}

// Leaf returns the parsed current certificate.
func (h *Holder) Leaf() (*x509.Certificate, error) {
	c := h.cur.Load()
	if c == nil || len(c.Certificate) == 0 {
		return nil, errors.New("no certificate loaded")
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// SelfSigned loads dir/cert.pem and dir/key.pem, creating a self-signed
// certificate for names first if they do not exist.
func SelfSigned(dir string, names []string) (*Holder, error) {
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
		if err := generate(certFile, keyFile, names); err != nil {
			return nil, err
		}
	}
	return Load(certFile, keyFile)
}

func generate(certFile, keyFile string, names []string) error {
	certPEM, keyPEM, err := selfsigned.New(names)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	if err := writeAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, certPEM, 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
