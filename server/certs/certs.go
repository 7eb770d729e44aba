// Package certs obtains and renews hearth's certificate with ACME
// (certmagic's ACME issuer, HTTP-01 behind nginx) and writes it to the files
// that both hearth's own TLS ports and nginx read.
//
// It runs inside the daemon, as the unprivileged hearth user: nginx passes
// /.well-known/acme-challenge/ to hearth's HTTP port, where Handler answers.
// After a renewal the daemon reloads its own certificate (OnRenew); a
// root-owned systemd path unit, installed by setup, watches CertFile and
// reloads nginx. No part of this needs root.
//
// Until DNS for every name points at this host, the files hold a
// self-signed certificate and the CA is never asked: a CA counts failed
// validations against rate limits.
package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/merveilles/hearth/internal/selfsigned"
	"go.uber.org/zap"
)

// Resolver looks names up; *net.Resolver is one, tests give another.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Config says what to certify and where.
type Config struct {
	Names []string // the first is the subject
	Email string   // ACME account contact; may be empty
	// Directory is the ACME directory URL (Let's Encrypt by default).
	Directory string
	// Roots, if set, are the only CAs trusted for the directory (tests).
	Roots *x509.CertPool
	// StorageDir keeps the ACME account and challenge state.
	StorageDir string
	// CertFile (full chain) and KeyFile are what hearth and nginx serve.
	CertFile, KeyFile string
	// HTTPAddr is where hearth's HTTP server, which serves Handler,
	// listens (127.0.0.1:5280). certmagic finds it busy and leaves
	// challenges to Handler.
	HTTPAddr string
	// Resolver defaults to net.DefaultResolver; HostAddrs to the
	// addresses of this host's interfaces.
	Resolver  Resolver
	HostAddrs func() ([]net.IP, error)
	// ProbePort is the port 80 a CA would reach (tests use nginx's test
	// port): an address that is not this host's own is accepted when a
	// request to it reaches this process (1:1 NAT, as on some clouds).
	ProbePort int
	// OnRenew runs after new files are in place (the daemon reloads its
	// certificate).
	OnRenew func() error
	// RecheckDNS is how often DNS is looked at again while it does not
	// point here (default 10 minutes); Retry is the first wait after a
	// failed order (default 5 minutes, doubling up to 12 hours).
	RecheckDNS, Retry time.Duration
	Log               *slog.Logger
}

// Manager owns the certificate files.
type Manager struct {
	probe  string // a random path segment only this process answers
	cfg    Config
	issuer *certmagic.ACMEIssuer
	cache  *certmagic.Cache
}

// LetsEncrypt is the production directory.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// New prepares a manager; it contacts nobody.
func New(cfg Config) (*Manager, error) {
	if len(cfg.Names) == 0 {
		return nil, errors.New("certificates: no names to certify")
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" || cfg.StorageDir == "" {
		return nil, errors.New("certificates: cert file, key file and storage directory are required")
	}
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("certificates: HTTP address %q: %w", cfg.HTTPAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 {
		return nil, fmt.Errorf("certificates: HTTP address %q has no port", cfg.HTTPAddr)
	}
	if cfg.Directory == "" {
		cfg.Directory = LetsEncrypt
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.HostAddrs == nil {
		cfg.HostAddrs = InterfaceAddrs
	}
	if cfg.RecheckDNS <= 0 {
		cfg.RecheckDNS = 10 * time.Minute
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 5 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ProbePort == 0 {
		cfg.ProbePort = 80
	}
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, probe: "hearth-probe-" + hex.EncodeToString(tok[:])}
	var cmcfg *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cmcfg, nil },
		Logger:           zap.NewNop(),
	})
	cmcfg = certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: cfg.StorageDir},
		Logger:  zap.NewNop(),
	})
	m.issuer = certmagic.NewACMEIssuer(cmcfg, certmagic.ACMEIssuer{
		CA:                      cfg.Directory,
		TestCA:                  cfg.Directory, // never fall back to another CA
		Email:                   cfg.Email,
		Agreed:                  true,
		TrustedRoots:            cfg.Roots,
		DisableTLSALPNChallenge: true, // port 443 belongs to nginx
		ListenHost:              host,
		AltHTTPPort:             p,
		Logger:                  zap.NewNop(),
	})
	return m, nil
}

// Close stops certmagic's background work.
func (m *Manager) Close() { m.cache.Stop() }

// Handler answers ACME HTTP-01 challenges and passes everything else on.
func (m *Manager) Handler(next http.Handler) http.Handler {
	acme := m.issuer.HTTPChallengeHandler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == probePrefix+m.probe {
			io.WriteString(w, m.probe)
			return
		}
		acme.ServeHTTP(w, r)
	})
}

const probePrefix = "/.well-known/acme-challenge/"

// reachesUs asks ip on port 80, as the CA would, for the probe only this
// process knows.
func (m *Manager) reachesUs(ctx context.Context, name string, ip net.IP) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(m.cfg.ProbePort))
	c := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+name+probePrefix+m.probe, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return resp.StatusCode == http.StatusOK && string(b) == m.probe
}

// EnsureFiles writes a self-signed certificate for the names when there
// are no certificate files yet, so hearth and nginx can start.
func (m *Manager) EnsureFiles() error {
	if _, err := os.Stat(m.cfg.CertFile); err == nil {
		return nil
	}
	return WriteSelfSigned(m.cfg.CertFile, m.cfg.KeyFile, m.cfg.Names)
}

// Status is what the current files hold.
type Status struct {
	SelfSigned bool
	NotAfter   time.Time
	Missing    []string // configured names the certificate lacks
	Due        bool     // should be replaced now
}

// Current inspects the certificate files.
func (m *Manager) Current(now time.Time) (Status, error) {
	leaf, err := ReadLeaf(m.cfg.CertFile)
	if err != nil {
		return Status{Due: true}, err
	}
	st := Status{SelfSigned: IsSelfSigned(leaf), NotAfter: leaf.NotAfter}
	for _, n := range m.cfg.Names {
		if leaf.VerifyHostname(n) != nil {
			st.Missing = append(st.Missing, n)
		}
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	renewAt := leaf.NotBefore.Add(life * 2 / 3)
	st.Due = st.SelfSigned || len(st.Missing) > 0 || !now.Before(renewAt)
	return st, nil
}

// ErrDNSNotHere means some name does not resolve to this host yet.
var ErrDNSNotHere = errors.New("DNS does not point at this host")

// CheckDNS resolves every name (A and AAAA) and requires each address to
// be one of this host's, or to reach this process through port 80 (NAT).
func (m *Manager) CheckDNS(ctx context.Context) error {
	mine, err := m.cfg.HostAddrs()
	if err != nil {
		return fmt.Errorf("this host's addresses: %w", err)
	}
	for _, n := range m.cfg.Names {
		addrs, err := m.cfg.Resolver.LookupIPAddr(ctx, n)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrDNSNotHere, n, err)
		}
		if len(addrs) == 0 {
			return fmt.Errorf("%w: %s has no A or AAAA record", ErrDNSNotHere, n)
		}
		for _, a := range addrs {
			if !slices.ContainsFunc(mine, a.IP.Equal) && !m.reachesUs(ctx, n, a.IP) {
				return fmt.Errorf("%w: %s resolves to %s, which is neither an address of this host (%v) nor reaches it on port %d", ErrDNSNotHere, n, a.IP, mine, m.cfg.ProbePort)
			}
		}
	}
	return nil
}

// Renew obtains a new certificate if the current one is due and DNS
// points here. It reports whether the files changed.
func (m *Manager) Renew(ctx context.Context) (bool, error) {
	st, err := m.Current(time.Now())
	if err != nil {
		m.cfg.Log.Warn("cannot read the current certificate; obtaining a new one", "err", err)
	}
	if !st.Due {
		return false, nil
	}
	if err := m.CheckDNS(ctx); err != nil {
		return false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: m.cfg.Names[0]},
		DNSNames: m.cfg.Names,
	}, key)
	if err != nil {
		return false, fmt.Errorf("certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return false, err
	}
	m.cfg.Log.Info("asking the CA for a certificate", "names", m.cfg.Names, "ca", m.cfg.Directory)
	issued, err := m.issuer.Issue(ctx, csr)
	if err != nil {
		return false, fmt.Errorf("ACME order for %v: %w", m.cfg.Names, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	if err := writePair(m.cfg.CertFile, m.cfg.KeyFile, issued.Certificate, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})); err != nil {
		return false, err
	}
	m.cfg.Log.Info("new certificate in place", "names", m.cfg.Names, "file", m.cfg.CertFile)
	if m.cfg.OnRenew != nil {
		if err := m.cfg.OnRenew(); err != nil {
			return true, fmt.Errorf("certificate renewed but not reloaded: %w", err)
		}
	}
	return true, nil
}

// Run keeps the certificate current until ctx ends: self-signed while DNS
// points elsewhere, then issued, then renewed at two thirds of its life.
func (m *Manager) Run(ctx context.Context) error {
	if err := m.EnsureFiles(); err != nil {
		return err
	}
	retry := m.cfg.Retry
	for {
		wait := 12 * time.Hour
		_, err := m.Renew(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrDNSNotHere):
			m.cfg.Log.Info("keeping the self-signed certificate until DNS points here", "why", err)
			wait = m.cfg.RecheckDNS
		case err != nil:
			m.cfg.Log.Error("certificate renewal failed; will retry", "err", err, "retry_in", retry)
			wait, retry = retry, min(retry*2, 12*time.Hour)
		default:
			retry = m.cfg.Retry
			if st, err := m.Current(time.Now()); err == nil && !st.Due {
				life := time.Until(st.NotAfter)
				wait = min(wait, max(life/3, time.Minute))
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// IsSelfSigned reports whether a certificate signed itself. (It is not a
// CA, so CheckSignatureFrom would refuse it as a parent.)
func IsSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// InterfaceAddrs lists the IP addresses of this host's interfaces.
func InterfaceAddrs() ([]net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP)
		}
	}
	return out, nil
}

// ReadLeaf parses the first certificate of a PEM file.
func ReadLeaf(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no certificate in it", path)
		}
		if blk.Type == "CERTIFICATE" {
			return x509.ParseCertificate(blk.Bytes)
		}
	}
}

// WriteSelfSigned writes a self-signed certificate for names.
func WriteSelfSigned(certFile, keyFile string, names []string) error {
	certPEM, keyPEM, err := selfsigned.New(names)
	if err != nil {
		return err
	}
	return writePair(certFile, keyFile, certPEM, keyPEM)
}

// writePair replaces the key, then the certificate: the path unit that
// reloads nginx watches the certificate, so it fires once both match.
func writePair(certFile, keyFile string, chainPEM, keyPEM []byte) error {
	if err := os.MkdirAll(filepath.Dir(certFile), 0o750); err != nil {
		return fmt.Errorf("certificate directory: %w", err)
	}
	// nginx's master runs as root and reads the key as root: 0600 is enough.
	if err := writeAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, chainPEM, 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
