// Package config is hearth's typed configuration: defaults, loading from
// YAML and validation with errors that say what to fix.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"mellium.im/xmpp/jid"
)

// Duration is a time.Duration written as "90s", "5m", "30d" in YAML.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML accepts Go durations plus a "d" suffix for days.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in the same form.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ParseDuration parses "30d", "12h", "90s".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		var days int
		if _, err := fmt.Sscanf(s, "%dd", &days); err != nil || days < 0 {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 30d, 12h, 90s)", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 30d, 12h, 90s)", s)
	}
	return v, nil
}

// Config is the whole configuration of one hearth instance.
type Config struct {
	Domain           string           `yaml:"domain"`
	DataDir          string           `yaml:"data_dir"`
	Listen           Listen           `yaml:"listen"`
	TLS              TLS              `yaml:"tls"`
	Auth             Auth             `yaml:"auth"`
	Limits           Limits           `yaml:"limits"`
	Admin            Admin            `yaml:"admin"`
	E2EE             E2EE             `yaml:"e2ee"`
	Retention        Retention        `yaml:"retention"`
	ACME             ACME             `yaml:"acme"`
	StreamManagement StreamManagement `yaml:"stream_management"`
	Rooms            Rooms            `yaml:"rooms"`
	// DataVolume "required" means data_dir must be a mounted volume: hearth
	// refuses to start on the root disk when the volume is missing.
	DataVolume string `yaml:"data_volume"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
}

// Listen says where hearth accepts connections.
type Listen struct {
	Addresses []string `yaml:"addresses"` // IPs to bind; default 127.0.0.1 in dev
	C2SPort   int      `yaml:"c2s_port"`  // STARTTLS, 5222
	TLSPort   int      `yaml:"tls_port"`  // direct TLS (XEP-0368), 5223
	HTTPPort  int      `yaml:"http_port"` // portal behind nginx
}

// TLS names the certificate files; with SelfSigned, hearth makes its own.
type TLS struct {
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	SelfSigned bool   `yaml:"self_signed"`
}

// Auth configures credentials and login throttling.
type Auth struct {
	ScramIterations int `yaml:"scram_iterations"`
	// FailuresPerIP is how many failed logins one address may make in
	// FailureWindow before it must wait.
	FailuresPerIP int `yaml:"failures_per_ip"`
	// FailuresPerAccount is how many failed logins against one account, from
	// one address, are allowed in FailureWindow. Other addresses (the real
	// user) are not affected. Ten times as many from all addresses together
	// slow down the addresses the account has not logged in from.
	FailuresPerAccount int      `yaml:"failures_per_account"`
	FailureWindow      Duration `yaml:"failure_window"`
}

// Limits protect the server from misbehaving peers.
type Limits struct {
	MaxStanzaBytes        int      `yaml:"max_stanza_bytes"`
	MaxStanzaBytesPreAuth int      `yaml:"max_stanza_bytes_preauth"`
	MaxDepth              int      `yaml:"max_depth"`
	AuthTimeout           Duration `yaml:"auth_timeout"`
	MaxOutputBytes        int      `yaml:"max_output_bytes"`
	WriteTimeout          Duration `yaml:"write_timeout"`
	// ReadBytesPerSecond and ReadBurstBytes rate-limit each connection; a
	// client over the limit is slowed down, not disconnected.
	ReadBytesPerSecond      int `yaml:"read_bytes_per_second"`
	ReadBurstBytes          int `yaml:"read_burst_bytes"`
	MaxPendingSubscriptions int `yaml:"max_pending_subscriptions"`
	MaxRosterItems          int `yaml:"max_roster_items"`
	MaxOfflineMessages      int `yaml:"max_offline_messages"`
	MaxSessionsPerAccount   int `yaml:"max_sessions_per_account"`
}

// Admin configures the admin socket.
type Admin struct {
	Socket string `yaml:"socket"`
	// Group, if set, may use the socket (mode 0660); otherwise only the
	// owner can (0600).
	Group string `yaml:"group"`
}

// E2EE is the end-to-end encryption policy for one-to-one messages
// (DESIGN.md decision 5).
type E2EE struct {
	// Policy is "required" (plaintext messages bounce), "optional"
	// (delivered, the sender is warned) or "off".
	Policy string `yaml:"policy"`
}

// StreamManagement configures XEP-0198 acks and resumption.
type StreamManagement struct {
	// ResumeWindow is how long a session whose connection was lost waits
	// to be resumed before its unacknowledged messages go to offline
	// storage; 0 turns resumption off.
	ResumeWindow Duration `yaml:"resume_window"`
}

// Rooms configures the group chat service (XEP-0045).
type Rooms struct {
	// Domain is the service's address; empty means rooms.DOMAIN.
	Domain string `yaml:"domain"`
	// Create says who may create rooms: "members" (default) or "admins".
	// Limited accounts never create rooms.
	Create string `yaml:"create"`
}

// RoomsDomain is the group chat service's domain.
func (c *Config) RoomsDomain() string {
	if c.Rooms.Domain != "" {
		return c.Rooms.Domain
	}
	return "rooms." + c.Domain
}

// Retention is how long personal archives, offline queues and room
// archives keep messages; the daemon prunes once a day, "hearth prune" on
// demand.
type Retention struct {
	Archive Duration `yaml:"archive"` // 0 keeps archives forever
	Offline Duration `yaml:"offline"` // 0 keeps offline messages until delivered
	// RoomArchive applies to rooms without a retention of their own; 0
	// keeps their archives forever.
	RoomArchive Duration `yaml:"room_archive"`
	// RoomArchiveMax is the longest retention a chat admin may give a room
	// (the shortest is RoomArchiveMin).
	RoomArchiveMax Duration `yaml:"room_archive_max"`
}

// RoomArchiveMin is the shortest retention a chat admin may give a room.
const RoomArchiveMin = 24 * time.Hour

// ForRoom is how long a room keeps its archive: its own retention if a
// chat admin set one (own > 0), held within the configured bounds (a value
// set before the bounds narrowed obeys the new ones), else the server
// default. 0 means forever.
func (r Retention) ForRoom(own time.Duration) time.Duration {
	if own <= 0 {
		return max(r.RoomArchive.D(), 0)
	}
	d := max(own, RoomArchiveMin)
	if hi := r.RoomArchiveMax.D(); hi > 0 {
		d = min(d, hi)
	}
	return d
}

// ACME obtains tls.cert_file/key_file from a CA (Let's Encrypt) once DNS
// for every name points at this host; until then those files hold a
// self-signed certificate.
type ACME struct {
	Enabled   bool     `yaml:"enabled"`
	Email     string   `yaml:"email"`     // the CA's contact for expiry notices
	Directory string   `yaml:"directory"` // the CA's ACME directory URL
	Names     []string `yaml:"names"`     // empty: the domain alone
}

// Default returns the production defaults for domain.
func Default(domain string) *Config {
	c := defaults(domain)
	if domain != "" {
		c.Rooms.Domain = "rooms." + domain
	}
	return c
}

func defaults(domain string) *Config {
	return &Config{
		Domain:  domain,
		DataDir: "/var/lib/hearth",
		Listen:  Listen{Addresses: []string{"0.0.0.0", "::"}, C2SPort: 5222, TLSPort: 5223, HTTPPort: 5280},
		TLS:     TLS{},
		Auth: Auth{
			ScramIterations:    10000,
			FailuresPerIP:      20,
			FailuresPerAccount: 5,
			FailureWindow:      Duration(10 * time.Minute),
		},
		Limits: Limits{
			MaxStanzaBytes:          256 << 10,
			MaxStanzaBytesPreAuth:   16 << 10,
			MaxDepth:                48,
			AuthTimeout:             Duration(60 * time.Second),
			MaxOutputBytes:          2 << 20,
			WriteTimeout:            Duration(60 * time.Second),
			ReadBytesPerSecond:      256 << 10,
			ReadBurstBytes:          1 << 20,
			MaxPendingSubscriptions: 500,
			MaxRosterItems:          2000,
			MaxOfflineMessages:      1000,
			MaxSessionsPerAccount:   20,
		},
		E2EE:             E2EE{Policy: "required"},
		Retention:        Retention{Archive: Duration(180 * 24 * time.Hour), Offline: Duration(30 * 24 * time.Hour), RoomArchive: Duration(90 * 24 * time.Hour), RoomArchiveMax: Duration(365 * 24 * time.Hour)},
		StreamManagement: StreamManagement{ResumeWindow: Duration(5 * time.Minute)},
		Rooms:            Rooms{Create: "members"},
		ACME:             ACME{Directory: "https://acme-v02.api.letsencrypt.org/directory", Names: []string{}},
		LogLevel:         "info",
	}
}

// AdminSocket is where the admin socket lives.
func (c *Config) AdminSocket() string {
	if c.Admin.Socket != "" {
		return c.Admin.Socket
	}
	return filepath.Join(c.DataDir, "admin.sock")
}

// DBPath is the bbolt file.
func (c *Config) DBPath() string { return filepath.Join(c.DataDir, "hearth.db") }

// Load reads a YAML file over the defaults and validates it.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c := Default("")
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if c.Rooms.Domain == "" && c.Domain != "" {
		// Resolved once here rather than on every message that asks.
		c.Rooms.Domain = "rooms." + c.Domain
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate checks every field and reports all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Domain == "" {
		bad("domain: required (the chat domain, e.g. chat.example.org)")
	} else if j, err := jid.Parse(c.Domain); err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
		bad("domain: %q is not a valid domain name", c.Domain)
	}
	if c.DataDir == "" {
		bad("data_dir: required")
	}
	if c.Rooms.Create != "members" && c.Rooms.Create != "admins" {
		bad("rooms.create: %q must be members or admins", c.Rooms.Create)
	}
	if d := c.Rooms.Domain; d != "" {
		if j, err := jid.Parse(d); err != nil || j.Localpart() != "" || j.Resourcepart() != "" || d == c.Domain {
			bad("rooms.domain: %q is not a valid domain name different from the chat domain", d)
		}
	}
	for _, a := range c.Listen.Addresses {
		if net.ParseIP(a) == nil {
			bad("listen.addresses: %q is not an IP address", a)
		}
	}
	for name, p := range map[string]int{"c2s_port": c.Listen.C2SPort, "tls_port": c.Listen.TLSPort, "http_port": c.Listen.HTTPPort} {
		if p < 0 || p > 65535 {
			bad("listen.%s: %d is not a port (0 disables it)", name, p)
		}
	}
	if !c.TLS.SelfSigned && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		bad("tls: set cert_file and key_file, or self_signed: true")
	}
	if c.Auth.ScramIterations < 4096 {
		bad("auth.scram_iterations: %d is below the minimum of 4096", c.Auth.ScramIterations)
	}
	l := c.Limits
	if l.MaxStanzaBytes < 10000 {
		bad("limits.max_stanza_bytes: %d is below 10000 (RFC 6120 requires at least 10000)", l.MaxStanzaBytes)
	}
	if l.MaxStanzaBytesPreAuth < 4096 || l.MaxStanzaBytesPreAuth > l.MaxStanzaBytes {
		bad("limits.max_stanza_bytes_preauth: %d must be between 4096 and max_stanza_bytes", l.MaxStanzaBytesPreAuth)
	}
	if l.MaxDepth < 8 || l.MaxDepth > 1000 {
		bad("limits.max_depth: %d must be between 8 and 1000", l.MaxDepth)
	}
	if l.MaxOutputBytes < l.MaxStanzaBytes {
		bad("limits.max_output_bytes: must be at least max_stanza_bytes")
	}
	if l.AuthTimeout.D() < time.Second || l.WriteTimeout.D() < time.Second {
		bad("limits.auth_timeout and write_timeout: must be at least 1s")
	}
	if l.ReadBytesPerSecond < 0 || (l.ReadBytesPerSecond > 0 && l.ReadBurstBytes < l.MaxStanzaBytes) {
		bad("limits.read_burst_bytes: must be at least max_stanza_bytes when a read rate is set")
	}
	if l.MaxPendingSubscriptions < 1 || l.MaxRosterItems < 1 || l.MaxOfflineMessages < 0 || l.MaxSessionsPerAccount < 1 {
		bad("limits: max_pending_subscriptions, max_roster_items and max_sessions_per_account must be positive")
	}
	if c.DataVolume != "" && c.DataVolume != "required" {
		bad("data_volume: %q is not \"required\" or empty (data on the root disk)", c.DataVolume)
	}
	switch c.E2EE.Policy {
	case "required", "optional", "off":
	default:
		bad("e2ee.policy: %q is not required, optional or off", c.E2EE.Policy)
	}
	for name, d := range map[string]Duration{"archive": c.Retention.Archive, "offline": c.Retention.Offline} {
		if d < 0 || (d > 0 && d.D() < time.Hour) {
			bad("retention.%s: %s must be 0 (keep forever) or at least 1h", name, d.D())
		}
	}
	if r := c.Retention; r.RoomArchiveMax.D() < RoomArchiveMin {
		bad("retention.room_archive_max: %s must be at least 1d", r.RoomArchiveMax.D())
	} else if r.RoomArchive != 0 && (r.RoomArchive.D() < RoomArchiveMin || r.RoomArchive > r.RoomArchiveMax) {
		bad("retention.room_archive: %s must be 0 (keep forever) or between 1d and retention.room_archive_max (%s)", r.RoomArchive.D(), r.RoomArchiveMax.D())
	}
	if w := c.StreamManagement.ResumeWindow; w < 0 || w.D() > 24*time.Hour {
		bad("stream_management.resume_window: %s must be between 0 (no resumption) and 24h", w.D())
	}
	if c.ACME.Enabled {
		if c.TLS.SelfSigned || c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			bad("acme.enabled: needs tls.cert_file and tls.key_file (where the certificate is written) and self_signed: false")
		}
		if !strings.HasPrefix(c.ACME.Directory, "https://") {
			bad("acme.directory: %q must be an https:// URL", c.ACME.Directory)
		}
	}
	for _, n := range c.ACME.Names {
		if j, err := jid.Parse(n); err != nil || j.Localpart() != "" || j.Resourcepart() != "" || n != strings.ToLower(n) {
			bad("acme.names: %q is not a lower-case domain name", n)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}
