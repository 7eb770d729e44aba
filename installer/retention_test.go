package installer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/server/config"
)

// Setup's room archive answer becomes retention.room_archive in hearth.yaml,
// within the bound the daemon enforces.
func TestRoomArchiveRetentionReachesTheConfig(t *testing.T) {
	day := 24 * time.Hour
	a := installer.DefaultAnswers()
	a.Domain, a.ACMEEmail = "chat.example.org", "ops@example.org"
	a.Retention.RoomArchive = config.Duration(200 * day)
	a.Retention.PersonalArchive = config.Duration(60 * day)
	b, err := installer.ConfigFile{Answers: a}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "room_archive: 200d\n") {
		t.Fatalf("hearth.yaml lacks room_archive: 200d:\n%s", b)
	}
	// The file setup writes must load with TLS files in place.
	dir := t.TempDir()
	raw := strings.NewReplacer(installer.CertFile, filepath.Join(dir, "cert.pem"), installer.KeyFile, filepath.Join(dir, "key.pem")).Replace(string(b))
	path := filepath.Join(dir, "hearth.yaml")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("rendered hearth.yaml does not load: %v", err)
	}
	if cfg.Retention.RoomArchive.D() != 200*day || cfg.Retention.Archive.D() != 60*day {
		t.Fatalf("retention %+v", cfg.Retention)
	}

	// Longer than the rooms' ceiling is refused before anything is written.
	a.Retention.RoomArchive = config.Duration(400 * day)
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "retention.room_archive: must be at most 365d") {
		t.Fatalf("Validate with a 400d room archive: %v", err)
	}
	for s, ok := range map[string]bool{"365d": true, "30d": true, "366d": false, "12h": false, "soon": false} {
		if err := installer.ValidateRoomRetention(s); (err == nil) != ok {
			t.Errorf("ValidateRoomRetention(%q) = %v", s, err)
		}
	}
}
