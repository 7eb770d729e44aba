package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRoomArchiveRetention(t *testing.T) {
	day := 24 * time.Hour
	c := Default("chat.example.org")
	if c.Retention.RoomArchive.D() != 90*day || c.Retention.RoomArchiveMax.D() != 365*day {
		t.Fatalf("room archive defaults: %+v", c.Retention)
	}
	for _, bad := range []struct {
		archive, max time.Duration
		field        string
	}{
		{time.Hour, 365 * day, "retention.room_archive:"}, // under the 1d floor
		{400 * day, 365 * day, "retention.room_archive:"}, // over the ceiling
		{-day, 365 * day, "retention.room_archive:"},
		{0, time.Hour, "retention.room_archive_max:"},
	} {
		c := Default("chat.example.org")
		c.TLS.SelfSigned = true
		c.Retention.RoomArchive, c.Retention.RoomArchiveMax = Duration(bad.archive), Duration(bad.max)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), bad.field) {
			t.Errorf("room_archive %s, max %s: %v", bad.archive, bad.max, err)
		}
	}
	for _, ok := range [][2]time.Duration{{0, 365 * day}, {day, day}, {365 * day, 3650 * day}} {
		c := Default("chat.example.org")
		c.TLS.SelfSigned = true
		c.Retention.RoomArchive, c.Retention.RoomArchiveMax = Duration(ok[0]), Duration(ok[1])
		if err := c.Validate(); err != nil {
			t.Errorf("room_archive %s, max %s refused: %v", ok[0], ok[1], err)
		}
	}

	// A configuration written before rooms existed gets the defaults.
	p := filepath.Join(t.TempDir(), "hearth.yaml")
	yml := "domain: chat.example.org\ntls:\n  self_signed: true\nretention:\n  archive: 30d\n  room_archive_max: 730d\n"
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Retention.Archive.D() != 30*day || c.Retention.RoomArchive.D() != 90*day || c.Retention.RoomArchiveMax.D() != 730*day {
		t.Fatalf("loaded retention: %+v", c.Retention)
	}
}
