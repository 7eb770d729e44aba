package supervisor

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/merveilles/hearth/supervisor/health"
)

// watchdog feeds systemd's watchdog (WatchdogSec=) only while probe
// passes, so a process that is alive but no longer serves is restarted.
type watchdog struct {
	notify Notifier
	probe  func(ctx context.Context) error
	log    *slog.Logger
	// every overrides half of WATCHDOG_USEC (tests).
	every time.Duration
}

func (w watchdog) run(ctx context.Context) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		w.log.Warn("systemd watchdog settings unreadable; not feeding it", "err", err)
	}
	if interval <= 0 {
		<-ctx.Done() // no watchdog configured
		return nil
	}
	every := w.every
	if every <= 0 {
		every = interval / 2
	}
	failing := false
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, max(interval/2, time.Second))
		err := w.probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err == nil:
			w.notify.send(daemon.SdNotifyWatchdog)
			if failing {
				w.log.Info("health probe passes again; feeding the watchdog")
			}
			failing = false
		case !failing:
			w.log.Error("health probe failed; not feeding the systemd watchdog (systemd restarts hearth if this lasts)", "err", err, "watchdog", interval)
			failing = true
		default:
			w.log.Debug("health probe still failing", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// probeXMPP opens a client connection to the running server as a client
// would: TCP, the TLS handshake on the direct-TLS port (or plain on the
// STARTTLS port), a stream header, and waits for the stream features. A
// stuck accept loop, TLS setup or stream layer fails it.
func probeXMPP(ctx context.Context, domain string, starttls, direct []net.Addr) error {
	var d net.Dialer
	var conn net.Conn
	var err error
	switch {
	case len(direct) > 0:
		conn, err = d.DialContext(ctx, "tcp", loopback(direct[0]))
		if err == nil {
			tc := tls.Client(conn, &tls.Config{ServerName: domain, InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}}) // only liveness is checked
			if err = tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return fmt.Errorf("health probe: TLS handshake: %w", err)
			}
			conn = tc
		}
	case len(starttls) > 0:
		conn, err = d.DialContext(ctx, "tcp", loopback(starttls[0]))
	default:
		return errors.New("health probe: the chat service has no listener")
	}
	if err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	header := fmt.Sprintf(`<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`, domain)
	if _, err := io.WriteString(conn, header); err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for got.Len() < 64<<10 {
		n, err := conn.Read(buf)
		got.Write(buf[:n])
		if bytes.Contains(got.Bytes(), []byte("</stream:features>")) {
			io.WriteString(conn, "</stream:stream>")
			return nil
		}
		if err != nil {
			return fmt.Errorf("health probe: no stream features (got %q): %w", truncate(got.String(), 200), err)
		}
	}
	return errors.New("health probe: no stream features in 64 KiB")
}

// loopback turns a wildcard listen address into one we can dial.
func loopback(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		if ip.To4() != nil || ip == nil {
			ip = net.IPv4(127, 0, 0, 1)
		} else {
			ip = net.IPv6loopback
		}
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// statusLine is what `systemctl status hearth` shows, and warnings are
// logged when they first appear or change.
type statusReporter struct {
	dataDir string
	started time.Time
	log     *slog.Logger
	last    string
}

func (r *statusReporter) line(ctx context.Context, sessions int, restarting bool) string {
	var b strings.Builder
	if restarting {
		b.WriteString("chat service restarting")
	} else {
		fmt.Fprintf(&b, "sessions %d", sessions)
	}
	fmt.Fprintf(&b, ", up %s", time.Since(r.started).Round(time.Second))
	s, err := health.Read(ctx, r.dataDir)
	if err != nil {
		r.log.Warn("health reading failed", "err", err)
		return b.String()
	}
	b.WriteString(", " + s.Summary())
	warn := s.Warnings(health.Thresholds{})
	if w := strings.Join(warn, "; "); w != r.last {
		if w != "" {
			r.log.Warn("host health", "warnings", w)
		} else if r.last != "" {
			r.log.Info("host health back to normal")
		}
		r.last = w
	}
	if len(warn) > 0 {
		b.WriteString("; WARNING: " + strings.Join(warn, "; "))
	}
	return b.String()
}

// probe checks the running chat service end to end over loopback.
func (i *Instance) probe(ctx context.Context) error {
	st, dt := i.Addrs()
	return probeXMPP(ctx, i.config().Domain, st, dt)
}
