package installer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/merveilles/hearth/internal/selfsigned"
	"github.com/merveilles/hearth/templates/nginx"
)

// Certs is the certificates step. The daemon, as user hearth, runs the ACME
// client and writes CertFile and KeyFile; this step prepares what it needs
// and what it must not do itself: the directory it owns, a first
// self-signed certificate so nginx and hearth can start before DNS points
// here, and the root-owned path unit that reloads nginx on renewal.
type Certs struct {
	CertFile, KeyFile string
	Names             []string
	// Owner is the daemon's "user:group" (hearth:hearth).
	Owner string
	// UnitDir is where systemd units go (/etc/systemd/system).
	UnitDir string
}

// Name implements Step.
func (Certs) Name() string { return "certificates" }

const certsPathUnit = "hearth-certs.path"

// Plan implements Step.
func (s Certs) Plan(ctx context.Context, h *Host) ([]Action, error) {
	if s.UnitDir == "" {
		s.UnitDir = "/etc/systemd/system"
	}
	if len(s.Names) == 0 {
		return nil, errors.New("certificates: no names")
	}
	var acts []Action
	if !h.Exists(s.CertFile) {
		acts = append(acts, Action{
			Summary: fmt.Sprintf("create a self-signed certificate for %s in %s (hearth replaces it from the CA once DNS points here)", strings.Join(s.Names, ", "), filepath.Dir(s.CertFile)),
			Do: func(ctx context.Context, h *Host) error {
				if err := writeSelfSigned(h.Path(s.CertFile), h.Path(s.KeyFile), s.Names); err != nil {
					return err
				}
				if s.Owner != "" {
					for _, p := range []string{filepath.Dir(s.CertFile), s.CertFile, s.KeyFile} {
						if _, err := h.Cmd(ctx, "chown", s.Owner, h.Path(p)); err != nil {
							return err
						}
					}
				}
				return nil
			},
		})
	}
	units, err := nginx.Units(s.CertFile)
	if err != nil {
		return nil, err
	}
	wrote := false
	for _, u := range units {
		fa, err := h.FileActions(File{Path: filepath.Join(s.UnitDir, u.Name), Content: u.Content, Mode: 0o644})
		if err != nil {
			return nil, err
		}
		for _, a := range fa {
			if strings.HasPrefix(a.Summary, "create ") || strings.HasPrefix(a.Summary, "update ") {
				wrote = true
			}
		}
		acts = append(acts, fa...)
	}
	st, err := h.showUnit(ctx, certsPathUnit)
	if err != nil {
		return nil, err
	}
	if wrote || st["NeedDaemonReload"] == "yes" || st["LoadState"] == "not-found" {
		acts = append(acts, RunAction("systemctl", "daemon-reload"))
	}
	if wrote || st["UnitFileState"] != "enabled" || st["ActiveState"] != "active" {
		acts = append(acts, RunAction("systemctl", "enable", "--now", certsPathUnit))
	}
	return acts, nil
}

// writeSelfSigned makes the first certificate.
func writeSelfSigned(certFile, keyFile string, names []string) error {
	certPEM, keyPEM, err := selfsigned.New(names)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, certPEM, 0o644)
}

// Where the daemon keeps the certificate that its ports and nginx serve.
const (
	CertFile = DataDir + "/tls/fullchain.pem"
	KeyFile  = DataDir + "/tls/key.pem"
)

func certNames(a *Answers) []string {
	a.withDefaults()
	return []string{a.Domain, a.RoomsDomain, a.ShareDomain}
}
