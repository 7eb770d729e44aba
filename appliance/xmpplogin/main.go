// Command xmpplogin logs one account in to an XMPP server and pings the
// server: the appliance test runs it from the host inside the container's
// network namespace (nsenter --net), as a member's client would connect.
// It verifies the server's certificate against --ca, so a login proves the
// client reached the hearth that made that certificate.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/ping"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5222", "server address")
	account := flag.String("jid", "", "account JID (user@domain)")
	password := flag.String("password", "", "password")
	caFile := flag.String("ca", "", "PEM certificate the server must present (or be signed by)")
	direct := flag.Bool("direct", false, "direct TLS (XEP-0368) instead of STARTTLS")
	timeout := flag.Duration("timeout", 20*time.Second, "give up after")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	bound, err := login(ctx, *addr, *account, *password, *caFile, *direct)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xmpplogin:", err)
		os.Exit(1)
	}
	fmt.Println("bound", bound)
}

func login(ctx context.Context, addr, account, password, caFile string, direct bool) (string, error) {
	origin, err := jid.Parse(account)
	if err != nil {
		return "", fmt.Errorf("--jid: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return "", err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return "", errors.New("--ca: no certificate found")
	}
	cfg := &tls.Config{ServerName: origin.Domain().String(), RootCAs: roots, MinVersion: tls.VersionTLS12}
	features := []xmpp.StreamFeature{xmpp.SASL("", password, sasl.ScramSha256, sasl.ScramSha1), xmpp.BindResource()}
	var d net.Dialer
	var conn net.Conn
	if direct {
		cfg.NextProtos = []string{"xmpp-client"}
		conn, err = (&tls.Dialer{NetDialer: &d, Config: cfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
		features = append([]xmpp.StreamFeature{xmpp.StartTLS(cfg)}, features...)
	}
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", addr, err)
	}
	defer conn.Close()
	sess, err := xmpp.NewClientSession(ctx, origin, conn, features...)
	if err != nil {
		return "", fmt.Errorf("log in as %s: %w", origin, err)
	}
	defer sess.Close()
	go func() { _ = sess.Serve(nil) }()
	if err := ping.Send(ctx, sess, origin.Domain()); err != nil {
		return "", fmt.Errorf("ping the server: %w", err)
	}
	return sess.LocalAddr().String(), nil
}
