package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsValidate(t *testing.T) {
	c := Default("chat.example.org")
	c.TLS.SelfSigned = true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Auth.ScramIterations != 10000 || c.Limits.MaxStanzaBytes != 256<<10 {
		t.Fatalf("defaults changed: %+v", c)
	}
}

func TestValidationReportsEveryProblem(t *testing.T) {
	c := Default("not a domain!")
	c.Auth.ScramIterations = 100
	c.Limits.MaxDepth = 2
	c.Listen.Addresses = []string{"localhost"}
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"domain", "scram_iterations", "max_depth", "listen.addresses", "tls"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestLoadYAML(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hearth.yaml")
	os.WriteFile(p, []byte("domain: chat.example.org\ntls:\n  self_signed: true\nlimits:\n  auth_timeout: 2m\n"), 0o600)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "chat.example.org" || c.Limits.AuthTimeout.D() != 2*time.Minute {
		t.Fatalf("loaded %+v", c)
	}
	os.WriteFile(p, []byte("domain: chat.example.org\ntypo_field: 1\n"), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "typo_field") {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "12h": 12 * time.Hour, "90s": 90 * time.Second} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-3d", "3 days"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
