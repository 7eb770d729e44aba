package certs_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/merveilles/hearth/server/certs"
)

func manager(t *testing.T, resolver certs.Resolver, mine []string, probePort int) *certs.Manager {
	dir := t.TempDir()
	m, err := certs.New(certs.Config{
		Names: []string{"chat.example.org"}, StorageDir: dir,
		CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem"),
		HTTPAddr: "127.0.0.1:1", Resolver: resolver, ProbePort: probePort,
		HostAddrs: func() ([]net.IP, error) {
			var out []net.IP
			for _, s := range mine {
				out = append(out, net.ParseIP(s))
			}
			return out, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// An address that is not on an interface counts as "here" only when a
// request to it on port 80 reaches this very process (1:1 NAT).
func TestDNSBehindNAT(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	res := staticResolver{"chat.example.org": "127.0.0.1"}
	m := manager(t, res, []string{"10.9.9.9"}, port)
	other := manager(t, res, []string{"10.9.9.9"}, port)
	var serving atomic.Pointer[http.Handler]
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*serving.Load()).ServeHTTP(w, r) })}
	go srv.Serve(ln)
	defer srv.Close()

	h := other.Handler(http.NotFoundHandler())
	serving.Store(&h)
	if err := m.CheckDNS(context.Background()); !errors.Is(err, certs.ErrDNSNotHere) {
		t.Fatalf("another process answers port 80, CheckDNS = %v", err)
	}
	h = m.Handler(http.NotFoundHandler())
	serving.Store(&h)
	if err := m.CheckDNS(context.Background()); err != nil {
		t.Fatalf("port 80 reaches us, CheckDNS = %v", err)
	}
	if err := manager(t, staticResolver{}, []string{"10.9.9.9"}, port).CheckDNS(context.Background()); !errors.Is(err, certs.ErrDNSNotHere) {
		t.Fatalf("no record: %v", err)
	}
}
