package config

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CheckDataVolume refuses to run when data_volume is required and data_dir
// is not a mount point: the volume failed to mount (nofail lets the host
// boot without it), and writing to the bare directory would fill the root
// disk and hide the real data once the volume comes back.
func (c *Config) CheckDataVolume() error {
	return c.checkDataVolume("/proc/self/mountinfo")
}

func (c *Config) checkDataVolume(mountinfo string) error {
	if c.DataVolume != "required" {
		return nil
	}
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", c.DataDir, err)
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	ok, err := isMountPoint(mountinfo, dir)
	if err != nil {
		return fmt.Errorf("data_volume: cannot tell whether %s is mounted: %w", dir, err)
	}
	if !ok {
		return fmt.Errorf("data_volume: required, but %s is not a mounted volume; refusing to start so the root disk does not fill up. Check the volume: systemctl status var-lib-hearth.mount", dir)
	}
	return nil
}

// isMountPoint looks dir up among the mount points in a mountinfo file
// (proc(5): the fifth field, with spaces and such written as \040 octal).
func isMountPoint(mountinfo, dir string) (bool, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if unescapeMount(fields[4]) == dir {
			return true, nil
		}
	}
	return false, sc.Err()
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
