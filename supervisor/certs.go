package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/merveilles/hearth/server/certs"
	"github.com/merveilles/hearth/server/config"
)

func acmeNames(cfg *config.Config) []string {
	if len(cfg.ACME.Names) > 0 {
		return cfg.ACME.Names
	}
	return []string{cfg.Domain}
}

// ensureCertFiles gives a first start with ACME a self-signed certificate
// to serve (and nginx one to load) until the CA has issued one.
func ensureCertFiles(cfg *config.Config) error {
	if !cfg.ACME.Enabled {
		return nil
	}
	m, err := newCertManager(cfg, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.EnsureFiles(); err != nil {
		return fmt.Errorf("certificate files: %w", err)
	}
	return nil
}

func newCertManager(cfg *config.Config, i *Instance) (*certs.Manager, error) {
	c := certs.Config{
		Names:      acmeNames(cfg),
		Email:      cfg.ACME.Email,
		Directory:  cfg.ACME.Directory,
		StorageDir: filepath.Join(cfg.DataDir, "acme"),
		CertFile:   cfg.TLS.CertFile,
		KeyFile:    cfg.TLS.KeyFile,
		HTTPAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Listen.HTTPPort)),
	}
	if i != nil {
		c.Log = i.log.With("component", "certificates")
		c.OnRenew = i.reloadCert
		c.Roots = i.acmeRoots
	}
	return certs.New(c)
}

// runCerts keeps the ACME certificate current. Until the portal serves
// hearth's HTTP port, this serves it for the ACME challenges nginx passes
// on (everything else is 404).
func (i *Instance) runCerts(ctx context.Context) error {
	if !i.config().ACME.Enabled {
		<-ctx.Done()
		return nil
	}
	cfg := i.config()
	m, err := newCertManager(cfg, i)
	if err != nil {
		return err
	}
	defer m.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Listen.HTTPPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ACME challenge port: %w", err)
	}
	srv := &http.Server{Handler: m.Handler(http.NotFoundHandler()), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	err = m.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
