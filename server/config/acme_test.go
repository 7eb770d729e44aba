package config

import (
	"strings"
	"testing"
)

func TestACMEValidation(t *testing.T) {
	c := Default("chat.example.org")
	c.TLS = TLS{CertFile: "/var/lib/hearth/tls/fullchain.pem", KeyFile: "/var/lib/hearth/tls/key.pem"}
	c.ACME.Enabled = true
	c.ACME.Names = []string{"chat.example.org", "share.chat.example.org"}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid ACME config refused: %v", err)
	}
	c.TLS = TLS{SelfSigned: true}
	c.ACME.Directory = "http://ca.example/dir"
	c.ACME.Names = []string{"Chat.Example.org"}
	err := c.Validate()
	for _, want := range []string{"acme.enabled: needs tls.cert_file", "acme.directory", `acme.names: "Chat.Example.org"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
