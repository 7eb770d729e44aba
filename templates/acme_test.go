package templates

import (
	"reflect"
	"testing"
)

// With ACME names, the rendered configuration turns ACME on for exactly
// those names and loads.
func TestConfigWithACME(t *testing.T) {
	_, cfg := render(t, ConfigParams{Domain: "chat.example.org",
		CertFile: "/var/lib/hearth/tls/fullchain.pem", KeyFile: "/var/lib/hearth/tls/key.pem",
		ACMENames: []string{"chat.example.org", "rooms.chat.example.org", "share.chat.example.org"}, ACMEEmail: "ops@example.org"})
	if !cfg.ACME.Enabled || cfg.ACME.Email != "ops@example.org" ||
		!reflect.DeepEqual(cfg.ACME.Names, []string{"chat.example.org", "rooms.chat.example.org", "share.chat.example.org"}) {
		t.Errorf("acme: %+v", cfg.ACME)
	}
}
