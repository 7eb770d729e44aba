package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckDataVolume(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data dir")
	if err := os.Mkdir(data, 0o750); err != nil {
		t.Fatal(err)
	}
	mountinfo := filepath.Join(dir, "mountinfo")
	write := func(s string) {
		if err := os.WriteFile(mountinfo, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := Default("example.org")
	c.DataDir = data

	write("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n")
	if err := c.checkDataVolume(mountinfo); err != nil {
		t.Fatalf("no volume required: %v", err)
	}
	c.DataVolume = "required"
	err := c.checkDataVolume(mountinfo)
	if err == nil || !strings.Contains(err.Error(), "is not a mounted volume") {
		t.Fatalf("unmounted volume: %v", err)
	}
	escaped := strings.ReplaceAll(data, " ", `\040`)
	write("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n" +
		"40 22 8:16 / " + escaped + " rw,relatime shared:9 - ext4 /dev/sdb rw\n")
	if err := c.checkDataVolume(mountinfo); err != nil {
		t.Fatalf("mounted volume: %v", err)
	}
	// A mount below data_dir is not data_dir being mounted.
	write("40 22 8:16 / " + escaped + "/uploads rw - ext4 /dev/sdb rw\n")
	if err := c.checkDataVolume(mountinfo); err == nil {
		t.Fatal("a mount below data_dir passed")
	}
}

func TestDataVolumeValidated(t *testing.T) {
	c := Default("example.org")
	c.TLS.SelfSigned = true
	c.DataVolume = "yes"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "data_volume") {
		t.Fatalf("validate: %v", err)
	}
}
