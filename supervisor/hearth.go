package supervisor

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/merveilles/hearth/server"
	"github.com/merveilles/hearth/server/admin"
	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/retention"
	"github.com/merveilles/hearth/server/xmpp"
)

// Instance is one hearth process: the chat service and the admin socket
// under a Supervisor.
type Instance struct {
	// cfg is the running configuration; a reload swaps it (reload.go).
	cfg      atomic.Pointer[config.Config]
	reloadMu sync.Mutex
	log      *slog.Logger
	notify   Notifier
	// Supervisor may be tuned before Run (tests shorten the backoff).
	Supervisor Supervisor
	// ConfigFile, if set, is re-read on SIGHUP: what may change live is
	// applied, the rest is reported as needing a restart. Without it SIGHUP
	// reloads the certificate only.
	ConfigFile string
	// LogLevel, if set, is the level of the logger passed to Start, and
	// follows log_level on reload.
	LogLevel *slog.LevelVar
	// StatusEvery is how often the session count goes to systemd.
	StatusEvery time.Duration

	cur   atomic.Pointer[server.Server]
	mu    sync.Mutex
	first *server.Server // opened by Start, served by the first Run
	adm   *admin.Server
	// acmeRoots, if set, are the only CAs trusted for the ACME directory
	// (tests against Pebble).
	acmeRoots *x509.CertPool
}

// Start opens storage, certificates, the client ports and the admin socket.
// Failing here is fatal (a port in use, a locked database): retrying would
// not help, and the operator should see the error at once.
func Start(cfg *config.Config, log *slog.Logger) (*Instance, error) {
	i := &Instance{
		log:         log,
		notify:      Notifier{Log: log},
		Supervisor:  Supervisor{Log: log},
		StatusEvery: 30 * time.Second,
	}
	i.cfg.Store(cfg)
	if err := ensureCertFiles(cfg); err != nil {
		return nil, err
	}
	s, err := i.openServer()
	if err != nil {
		return nil, err
	}
	adm, err := i.openAdmin()
	if err != nil {
		_ = closeUnserved(s)
		return nil, err
	}
	i.first, i.adm = s, adm
	i.cur.Store(s)
	return i, nil
}

// closeUnserved releases a server that never served: Serve with an ended
// context runs its shutdown, which closes listeners and the store.
func closeUnserved(s *server.Server) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Serve(ctx)
}

// config is the running configuration.
func (i *Instance) config() *config.Config { return i.cfg.Load() }

func (i *Instance) openServer() (*server.Server, error) {
	s, err := server.New(i.config(), i.log)
	if err != nil {
		return nil, fmt.Errorf("start the chat service: %w", err)
	}
	if err := s.Listen(); err != nil {
		_ = closeUnserved(s)
		return nil, fmt.Errorf("start the chat service: %w", err)
	}
	starttls, direct := s.Addrs()
	for _, a := range starttls {
		i.log.Info("listening", "service", "xmpp-client (STARTTLS)", "addr", a.String())
	}
	for _, a := range direct {
		i.log.Info("listening", "service", "xmpp-client (direct TLS, XEP-0368)", "addr", a.String())
	}
	return s, nil
}

func (i *Instance) openAdmin() (*admin.Server, error) {
	cfg := i.config()
	adm, err := admin.Listen(cfg.AdminSocket(), cfg.Admin.Group)
	if err != nil {
		return nil, err
	}
	adm.Log = i.log.With("component", "admin")
	adm.Backend = i.adminOps
	i.log.Info("listening", "service", "admin socket", "path", adm.Path())
	return adm, nil
}

// Close releases what Start opened, for a caller that gives up before Run.
func (i *Instance) Close() error {
	i.mu.Lock()
	s, adm := i.first, i.adm
	i.first, i.adm = nil, nil
	i.mu.Unlock()
	var errs []error
	if adm != nil {
		errs = append(errs, adm.Close())
	}
	if s != nil {
		i.cur.CompareAndSwap(s, nil)
		errs = append(errs, closeUnserved(s))
	}
	return errors.Join(errs...)
}

// Server is the chat service currently running, nil while it restarts.
func (i *Instance) Server() *server.Server { return i.cur.Load() }

// Addrs are the client addresses of the running chat service.
func (i *Instance) Addrs() (starttls, direct []net.Addr) {
	if s := i.cur.Load(); s != nil {
		return s.Addrs()
	}
	return nil, nil
}

// AdminSocket is the admin socket's path.
func (i *Instance) AdminSocket() string { return i.config().AdminSocket() }

func (i *Instance) adminOps() (admin.Ops, error) {
	s := i.cur.Load()
	if s == nil {
		return nil, errors.New("the chat service is restarting; try again in a moment")
	}
	r := s.XMPP.Router()
	cfg := i.config()
	return &admin.Local{
		Store:           s.Store,
		Domain:          cfg.Domain,
		ScramIterations: cfg.Auth.ScramIterations,
		Daemon:          true,
		// The live module, so occupants see room changes at once.
		Rooms:    s.Rooms,
		Sessions: func(lp string) int { return len(r.Sessions(lp)) },
		Kick: func(lp, reason string) int {
			ss := r.Sessions(lp)
			for _, sess := range ss {
				sess.Close(&xmpp.StreamError{Condition: "not-authorized", Text: reason})
			}
			return len(ss)
		},
	}, nil
}

// Reload re-reads the configuration file (ConfigFile) and the TLS
// certificate. Each is applied only if it is valid: on error the old
// configuration, or the old certificate, stays and keeps serving, and the
// error says which failed. Sessions are never dropped.
func (i *Instance) Reload(ctx context.Context) error {
	var errs []error
	if i.ConfigFile != "" {
		if err := i.reloadConfig(ctx); err != nil {
			errs = append(errs, errConfig{err})
		}
	}
	if err := i.reloadCert(); err != nil {
		errs = append(errs, fmt.Errorf("certificate not reloaded, still serving the previous one: %w", err))
	}
	return errors.Join(errs...)
}

// reloadCert re-reads the TLS certificate files (SIGHUP, ACME renewal).
func (i *Instance) reloadCert() error {
	s := i.cur.Load()
	if s == nil {
		return errors.New("the chat service is restarting")
	}
	if err := s.Certs.Reload(); err != nil {
		return err
	}
	i.log.Info("TLS certificate reloaded")
	return nil
}

// Run serves until ctx ends, restarting failed components. SIGHUP reloads
// the configuration and the certificate (Reload). It returns once every
// component has stopped.
func (i *Instance) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		i.Supervisor.Run(runCtx,
			Service{Name: "xmpp", Run: i.runXMPP},
			Service{Name: "admin", Run: i.runAdmin},
			Service{Name: "memory", Run: memoryTrimmer{
				every: 2 * time.Second, quietTicks: 3, quietBytes: 1 << 20, minGain: 8 << 20,
				release: releaseFilePages, log: i.log,
			}.run},
			Service{Name: "retention", Run: retention.Daily(&i.cur, i.log)},
			Service{Name: "watchdog", Run: watchdog{notify: i.notify, probe: i.probe, log: i.log}.run},
			Service{Name: "certificates", Run: i.runCerts},
		)
	}()
	i.notify.Ready()
	i.notify.Status("sessions 0")
	tick := time.NewTicker(i.StatusEvery)
	defer tick.Stop()
	status := &statusReporter{dataDir: i.config().DataDir, started: time.Now(), log: i.log}
	for {
		select {
		case <-ctx.Done():
			i.log.Info("shutting down")
			i.notify.Stopping()
			stop()
			wg.Wait()
			i.log.Info("stopped")
			return nil
		case <-hup:
			i.notify.send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
			if err := i.Reload(ctx); err != nil {
				i.log.Error("reload failed", "err", err)
			}
			i.notify.Ready()
		case <-tick.C:
			if s := i.cur.Load(); s != nil {
				i.notify.Status("%s", status.line(ctx, s.XMPP.Router().SessionCount(), false))
			} else {
				i.notify.Status("%s", status.line(ctx, 0, true))
			}
		}
	}
}

func (i *Instance) runXMPP(ctx context.Context) error {
	i.mu.Lock()
	s := i.first
	i.first = nil
	i.mu.Unlock()
	if s == nil {
		var err error
		if s, err = i.openServer(); err != nil {
			return err
		}
		i.cur.Store(s)
		i.syncReloaded(ctx)
	}
	defer i.cur.CompareAndSwap(s, nil)
	return s.Serve(ctx)
}

func (i *Instance) runAdmin(ctx context.Context) error {
	i.mu.Lock()
	adm := i.adm
	i.adm = nil
	i.mu.Unlock()
	if adm == nil {
		var err error
		if adm, err = i.openAdmin(); err != nil {
			return err
		}
	}
	return adm.Serve(ctx)
}
