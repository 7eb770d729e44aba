// Package server assembles the chat service: storage, the XMPP core and,
// in one list, every feature module.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/server/tlscert"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/blocking"
	"github.com/merveilles/hearth/server/xmpp/carbons"
	"github.com/merveilles/hearth/server/xmpp/csi"
	"github.com/merveilles/hearth/server/xmpp/disco"
	"github.com/merveilles/hearth/server/xmpp/e2ee"
	"github.com/merveilles/hearth/server/xmpp/last"
	"github.com/merveilles/hearth/server/xmpp/mam"
	"github.com/merveilles/hearth/server/xmpp/message"
	"github.com/merveilles/hearth/server/xmpp/muc"
	"github.com/merveilles/hearth/server/xmpp/offline"
	"github.com/merveilles/hearth/server/xmpp/pep"
	"github.com/merveilles/hearth/server/xmpp/ping"
	"github.com/merveilles/hearth/server/xmpp/presence"
	"github.com/merveilles/hearth/server/xmpp/private"
	"github.com/merveilles/hearth/server/xmpp/roster"
	"github.com/merveilles/hearth/server/xmpp/sm"
	"github.com/merveilles/hearth/server/xmpp/timemod"
	"github.com/merveilles/hearth/server/xmpp/vcard"
	"github.com/merveilles/hearth/server/xmpp/version"
)

// modules is the whole server, top to bottom: each line is one feature.
func modules(rooms *muc.Module) []xmpp.Module {
	return []xmpp.Module{
		roster.New(),    // RFC 6121 rosters, XEP-0237 versioning
		presence.New(),  // RFC 6121 presence and subscriptions
		message.New(),   // RFC 6121 message delivery rules
		offline.New(),   // XEP-0160 offline storage
		disco.New(),     // XEP-0030 service discovery, XEP-0115 server caps
		ping.New(),      // XEP-0199 ping
		version.New(""), // XEP-0092 software version
		timemod.New(),   // XEP-0202 entity time
		vcard.New(),     // XEP-0054 vcard-temp
		private.New(),   // XEP-0049 private XML storage
		last.New(),      // XEP-0012 last activity
		blocking.New(),  // XEP-0191 blocking command
		pep.New(),       // XEP-0163 PEP, OMEMO, avatars (0084/0398), bookmarks (0402/0411)
		mam.New(),       // XEP-0313 message archive, XEP-0359 stanza-id
		e2ee.New(),      // end-to-end encryption policy for 1:1 messages (DESIGN.md 5)
		carbons.New(),   // XEP-0280 message carbons
		csi.New(),       // XEP-0352 client state indication
		sm.New(),        // XEP-0198 stream management: acks after durability, resumption
		rooms,           // XEP-0045 rooms at rooms.DOMAIN, with their archive, roles and E2EE policy
	}
}

// Server is a running chat service.
type Server struct {
	Config *config.Config
	Store  store.Store
	Certs  *tlscert.Holder
	XMPP   *xmpp.Server
	// Rooms is the group chat service, for room administration.
	Rooms *muc.Module
	log   *slog.Logger

	listeners []net.Listener
	wg        sync.WaitGroup
}

// New opens storage and certificates and registers every module; it does
// not listen yet.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	st, err := boltstore.Open(cfg.DBPath())
	if err != nil {
		return nil, err
	}
	var certs *tlscert.Holder
	if cfg.TLS.SelfSigned && cfg.TLS.CertFile == "" {
		certs, err = tlscert.SelfSigned(cfg.DataDir, []string{cfg.Domain})
	} else {
		certs, err = tlscert.Load(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	x := xmpp.NewServer(cfg, st, certs.TLSConfig(), log)
	rooms := muc.New()
	if err := x.Register(modules(rooms)...); err != nil {
		st.Close()
		return nil, err
	}
	return &Server{Config: cfg, Store: st, Certs: certs, XMPP: x, Rooms: rooms, log: log}, nil
}

// Listen opens the client ports on every configured address. A port of 0
// picks a free port (tests); Addrs reports what was bound.
func (s *Server) Listen() error {
	for _, ip := range s.Config.Listen.Addresses {
		for _, p := range []struct {
			port   int
			direct bool
		}{{s.Config.Listen.C2SPort, false}, {s.Config.Listen.TLSPort, true}} {
			if p.port < 0 {
				continue
			}
			// One family per socket: a dual-stack "::" would collide with
			// "0.0.0.0" on the same port.
			network := "tcp6"
			if parsed := net.ParseIP(ip); parsed != nil && parsed.To4() != nil {
				network = "tcp4"
			}
			ln, err := net.Listen(network, net.JoinHostPort(ip, strconv.Itoa(p.port)))
			if err != nil {
				s.closeListeners()
				return fmt.Errorf("listen: %w", err)
			}
			s.listeners = append(s.listeners, &taggedListener{Listener: ln, direct: p.direct})
		}
	}
	return nil
}

type taggedListener struct {
	net.Listener
	direct bool
}

// Addrs returns the bound addresses: STARTTLS ones and direct-TLS ones.
func (s *Server) Addrs() (starttls, direct []net.Addr) {
	for _, ln := range s.listeners {
		if ln.(*taggedListener).direct {
			direct = append(direct, ln.Addr())
		} else {
			starttls = append(starttls, ln.Addr())
		}
	}
	return starttls, direct
}

func (s *Server) closeListeners() {
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// Serve accepts connections until ctx ends, then shuts down cleanly.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, len(s.listeners))
	for _, ln := range s.listeners {
		tl := ln.(*taggedListener)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.XMPP.Serve(ctx, tl.Listener, tl.direct); err != nil {
				errc <- err
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		s.shutdown()
		return err
	}
	return s.shutdown()
}

func (s *Server) shutdown() error {
	sctx, cancel := context.WithTimeout(context.Background(), 10*1e9)
	defer cancel()
	err := s.XMPP.Shutdown(sctx)
	// A listener whose Serve had not started yet is not known to XMPP.
	s.closeListeners()
	s.wg.Wait()
	return errors.Join(err, s.Store.Close())
}
