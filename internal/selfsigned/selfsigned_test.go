package selfsigned

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

func TestNewIsAUsablePair(t *testing.T) {
	certPEM, keyPEM, err := New([]string{"chat.example.org", "rooms.chat.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("rooms.chat.example.org"); err != nil {
		t.Error(err)
	}
	if _, _, err := New(nil); err == nil {
		t.Error("no names accepted")
	}
}
