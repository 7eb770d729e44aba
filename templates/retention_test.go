package templates

import (
	"testing"
	"time"
)

// The retention answers reach hearth.yaml, room archives included.
func TestRetentionParams(t *testing.T) {
	_, cfg := render(t, ConfigParams{Domain: "chat.example.org", SelfSigned: true,
		ArchiveRetention: "200d", OfflineRetention: "7d", RoomArchiveRetention: "45d"})
	day := 24 * time.Hour
	if r := cfg.Retention; r.Archive.D() != 200*day || r.Offline.D() != 7*day || r.RoomArchive.D() != 45*day || r.RoomArchiveMax.D() != 365*day {
		t.Fatalf("retention %+v", r)
	}
}
