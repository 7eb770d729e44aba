// Package templates holds the files hearth writes on a host, embedded in
// the binary and golden-tested: for now the default configuration; later
// the nginx vhosts, systemd units and ufw profile.
package templates

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"text/template"
)

//go:embed hearth.yaml
var configText string

// ConfigParams fill the default configuration.
type ConfigParams struct {
	Domain  string
	DataDir string
	// SelfSigned, or CertFile and KeyFile.
	SelfSigned        bool
	CertFile, KeyFile string
	// DataVolume is "required" when data_dir is a mounted volume.
	DataVolume string
	// AdminGroup may use the admin socket (hearth-admin after setup).
	AdminGroup string
	// ACMENames, when set, turn on ACME for these names (written to
	// CertFile and KeyFile); ACMEEmail is the CA's contact.
	ACMENames []string
	ACMEEmail string
	// ArchiveRetention, OfflineRetention and RoomArchiveRetention are
	// durations like "180d"; empty means the defaults (180d, 30d, 90d).
	ArchiveRetention, OfflineRetention, RoomArchiveRetention string
	// RoomsDomain is the group chat service; empty means rooms.DOMAIN.
	RoomsDomain string
}

// Config renders the default hearth.yaml.
func Config(p ConfigParams) ([]byte, error) {
	if p.Domain == "" {
		return nil, errors.New("config template: domain is required")
	}
	if p.DataDir == "" {
		p.DataDir = "/var/lib/hearth"
	}
	if p.RoomsDomain == "" {
		p.RoomsDomain = "rooms." + p.Domain
	}
	if p.ArchiveRetention == "" {
		p.ArchiveRetention = "180d"
	}
	if p.OfflineRetention == "" {
		p.OfflineRetention = "30d"
	}
	if p.RoomArchiveRetention == "" {
		p.RoomArchiveRetention = "90d"
	}
	if !p.SelfSigned && (p.CertFile == "" || p.KeyFile == "") {
		return nil, errors.New("config template: give a certificate and key, or SelfSigned")
	}
	t, err := template.New("hearth.yaml").Funcs(template.FuncMap{"quote": quote}).Parse(configText)
	if err != nil {
		return nil, fmt.Errorf("config template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("config template: %w", err)
	}
	return b.Bytes(), nil
}

// quote writes a YAML double-quoted scalar (JSON strings are valid YAML),
// so no value can change the document's structure.
func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
