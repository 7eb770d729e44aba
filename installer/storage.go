package installer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Data volume paths.
const (
	DataDir       = "/var/lib/hearth"
	DataMountUnit = "var-lib-hearth.mount" // systemd-escape --path /var/lib/hearth
	mountUnitPath = "/etc/systemd/system/" + DataMountUnit
	stagingDir    = "/var/lib/hearth-installer/new-volume"
	// formerData keeps the data that lived on the root disk before a volume
	// was added, until the sysadmin removes it.
	formerData = "/var/lib/hearth.before-volume"
)

// Storage puts hearth's data on a block volume mounted at /var/lib/hearth
// by UUID. It uses a native systemd mount unit rather than an fstab line:
// systemd in a container ignores fstab device lines, and the unit behaves
// the same on a real host. With no Device, data stays on the root disk and
// the step does nothing.
type Storage struct {
	Device string // e.g. /dev/vdb; empty: no separate volume
	// Format allows mkfs on Device, and only when it holds no filesystem and
	// no partition table. The wizard sets it after the sysadmin typed the
	// device's name.
	Format bool
	// DeviceTimeout is how long boot waits for the volume.
	DeviceTimeout time.Duration
	// Service is stopped while data moves or the volume is mounted.
	Service string
}

// Name implements Step.
func (Storage) Name() string { return "data volume" }

// exitCoder is what exec.ExitError (and test fakes) expose.
type exitCoder interface{ ExitCode() int }

func exitCode(err error) int {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return -1
}

// Probe is what blkid says about a block device.
type Probe struct {
	UUID, Type, PTType string
}

// ProbeDevice reads a device's filesystem and partition table with blkid
// (no udev needed, unlike lsblk).
func ProbeDevice(ctx context.Context, h *Host, dev string) (Probe, error) {
	out, err := h.Cmd(ctx, "blkid", "-p", "-o", "export", dev)
	if err != nil {
		if exitCode(err) == 2 { // nothing found: an empty device
			return Probe{}, nil
		}
		return Probe{}, fmt.Errorf("probe %s: %w", dev, err)
	}
	var p Probe
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "UUID":
			p.UUID = v
		case "TYPE":
			p.Type = v
		case "PTTYPE":
			p.PTType = v
		}
	}
	return p, nil
}

// MountUnit is the unit that mounts the data volume. what is
// /dev/disk/by-uuid/UUID where udev maintains those links (a real host);
// without udev (a container) it is the device path itself, which systemd
// there does not wait for and mount(8) finds.
func MountUnit(what, fstype string, timeout time.Duration) []byte {
	return []byte(fmt.Sprintf(`# Written by "hearth setup": hearth's data volume.
# nofail: the host still boots without the volume; hearth.service then
# refuses to start (RequiresMountsFor, data_volume: required) instead of
# filling the root disk.
[Unit]
Description=hearth data volume
Before=hearth.service

[Mount]
What=%s
Where=%s
Type=%s
Options=nofail,x-systemd.device-timeout=%s

[Install]
WantedBy=multi-user.target
`, what, DataDir, fstype, durationSeconds(timeout)))
}

// mountSource names the volume in the unit: by UUID when udev keeps
// /dev/disk/by-uuid, else by its device path (containers have no udev).
func (s Storage) mountSource(h *Host, uuid string) string {
	if h.Exists("/dev/disk/by-uuid") {
		return "/dev/disk/by-uuid/" + uuid
	}
	return s.Device
}

func durationSeconds(d time.Duration) string {
	if d <= 0 {
		d = 90 * time.Second
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// Plan implements Step.
func (s Storage) Plan(ctx context.Context, h *Host) ([]Action, error) {
	if s.Device == "" {
		return nil, nil
	}
	if !h.Exists(s.Device) {
		return nil, fmt.Errorf("block device %s does not exist", s.Device)
	}
	probe, err := ProbeDevice(ctx, h, s.Device)
	if err != nil {
		return nil, err
	}
	var acts []Action
	fstype := probe.Type
	if fstype == "" {
		if probe.PTType != "" {
			return nil, fmt.Errorf("%s holds a %s partition table: choose one of its partitions, or wipe it yourself", s.Device, probe.PTType)
		}
		if !s.Format {
			return nil, fmt.Errorf("%s holds no filesystem; setup formats it only after you confirm by typing its name in the wizard (or format_device: %s in the answers file)", s.Device, s.Device)
		}
		fstype = "ext4"
		acts = append(acts, RunAction("mkfs.ext4", "-q", "-L", "hearth-data", s.Device))
	} else {
		switch fstype {
		case "ext4", "xfs", "btrfs":
		default:
			return nil, fmt.Errorf("%s holds a %s filesystem; hearth wants ext4, xfs or btrfs (setup formats only empty devices)", s.Device, fstype)
		}
	}
	uuid := probe.UUID
	// After mkfs the UUID is new: actions read it when they run.
	uuidNow := func(ctx context.Context, h *Host) (string, error) {
		if uuid != "" {
			return uuid, nil
		}
		p, err := ProbeDevice(ctx, h, s.Device)
		if err != nil {
			return "", err
		}
		if p.UUID == "" {
			return "", fmt.Errorf("%s has no UUID after mkfs", s.Device)
		}
		uuid = p.UUID
		return uuid, nil
	}

	if uuid != "" {
		fileActs, err := h.FileActions(File{Path: mountUnitPath, Content: MountUnit(s.mountSource(h, uuid), fstype, s.DeviceTimeout), Mode: 0o644})
		if err != nil {
			return nil, err
		}
		acts = append(acts, fileActs...)
	} else {
		acts = append(acts, Action{
			Summary: "create " + mountUnitPath + " for the new filesystem's UUID",
			Detail:  string(MountUnit(s.mountSource(h, "<UUID of the new filesystem>"), fstype, s.DeviceTimeout)),
			Do: func(ctx context.Context, h *Host) error {
				u, err := uuidNow(ctx, h)
				if err != nil {
					return err
				}
				return h.WriteManaged(ctx, File{Path: mountUnitPath, Content: MountUnit(s.mountSource(h, u), fstype, s.DeviceTimeout), Mode: 0o644})
			},
		})
	}

	mounted, err := mountedUUID(ctx, h, DataDir)
	if err != nil {
		return nil, err
	}
	if mounted != "" && mounted != uuid {
		return nil, fmt.Errorf("%s is already mounted from another filesystem (UUID %s); unmount it first", DataDir, mounted)
	}
	unit, err := h.showUnit(ctx, DataMountUnit)
	if err != nil {
		return nil, err
	}
	if len(acts) > 0 || unit["NeedDaemonReload"] == "yes" || unit["LoadState"] == "not-found" {
		acts = append(acts, RunAction("systemctl", "daemon-reload"))
	}
	if unit["UnitFileState"] != "enabled" {
		acts = append(acts, RunAction("systemctl", "enable", DataMountUnit))
	}
	if mounted == "" {
		service := s.Service
		if service == "" {
			service = "hearth.service"
		}
		// hearth must not write to the directory while it is replaced.
		acts = append(acts, RunAction("systemctl", "stop", service))
		hasData, err := dirHasEntries(h, DataDir)
		if err != nil {
			return nil, err
		}
		if hasData {
			acts = append(acts, s.moveAction(uuidNow))
		}
		acts = append(acts, RunAction("systemctl", "start", DataMountUnit))
		acts = append(acts, RunAction("chown", "hearth:hearth", DataDir), RunAction("chmod", "0750", DataDir))
	} else if ok, err := h.ownedBy(DataDir, "hearth:hearth"); err == nil && !ok {
		acts = append(acts, RunAction("chown", "hearth:hearth", DataDir))
	}
	return acts, nil
}

// moveAction copies data from the root disk onto the new volume: mount the
// volume aside, copy, compare, unmount, then move the old directory away
// and leave an empty mount point. Until the last rename the old data is
// untouched, so a failure leaves the host as it was.
func (s Storage) moveAction(uuidNow func(context.Context, *Host) (string, error)) Action {
	return Action{
		Summary: fmt.Sprintf("move the data in %s onto the volume (mount it at %s, cp -a, diff -r, unmount; the old copy stays in %s)", DataDir, stagingDir, formerData),
		Do: func(ctx context.Context, h *Host) (err error) {
			uuid, err := uuidNow(ctx, h)
			if err != nil {
				return err
			}
			if h.Exists(formerData) {
				return fmt.Errorf("%s already exists from an earlier move; remove it once you no longer need it, then rerun", formerData)
			}
			if err := os.MkdirAll(h.Path(stagingDir), 0o700); err != nil {
				return fmt.Errorf("create %s: %w", stagingDir, err)
			}
			if _, err := h.Cmd(ctx, "mount", "UUID="+uuid, h.Path(stagingDir)); err != nil {
				return err
			}
			defer func() {
				if _, uerr := h.Cmd(context.WithoutCancel(ctx), "umount", h.Path(stagingDir)); uerr != nil && err == nil {
					err = uerr
				}
			}()
			if has, err := volumeHasData(h, stagingDir); err != nil {
				return err
			} else if has {
				return fmt.Errorf("the volume already holds files and so does %s: move one of them away, then rerun", DataDir)
			}
			// From here on a failure empties the volume again (it was empty
			// before), so a rerun starts from the same state.
			clean := func(cause error) error {
				if cerr := emptyVolume(h, stagingDir); cerr != nil {
					return fmt.Errorf("%w; emptying the volume again failed too: %v", cause, cerr)
				}
				return cause
			}
			if _, err := h.Cmd(ctx, "cp", "-a", h.Path(DataDir)+"/.", h.Path(stagingDir)+"/"); err != nil {
				return clean(fmt.Errorf("copy the data (the original is untouched): %w", err))
			}
			// mkfs's lost+found is on the volume only.
			if _, err := h.Cmd(ctx, "diff", "-r", "--no-dereference", "-x", "lost+found", h.Path(DataDir), h.Path(stagingDir)); err != nil {
				return clean(fmt.Errorf("the copy differs from the original (the original is untouched): %w", err))
			}
			if err := os.Rename(h.Path(DataDir), h.Path(formerData)); err != nil {
				return fmt.Errorf("move the old data aside: %w", err)
			}
			if err := os.Mkdir(h.Path(DataDir), 0o750); err != nil {
				return fmt.Errorf("create the mount point %s (the old data is in %s): %w", DataDir, formerData, err)
			}
			h.logf("data volume: the data that was on the root disk is kept in %s; remove it once hearth runs well", formerData)
			return nil
		},
	}
}

// mountedUUID is the UUID of the filesystem mounted at dir, or "". The
// source device is probed with blkid: findmnt's own UUID column comes from
// udev, which containers lack.
func mountedUUID(ctx context.Context, h *Host, dir string) (string, error) {
	out, err := h.Cmd(ctx, "findmnt", "-rn", "-o", "SOURCE", "--mountpoint", h.Path(dir))
	if err != nil {
		if exitCode(err) == 1 { // not a mount point
			return "", nil
		}
		return "", fmt.Errorf("is %s mounted: %w", dir, err)
	}
	src := strings.TrimSpace(string(out))
	if !strings.HasPrefix(src, "/dev/") {
		return "", fmt.Errorf("%s is mounted from %q, not from a block device; unmount it first", dir, src)
	}
	p, err := ProbeDevice(ctx, h, src)
	if err != nil {
		return "", err
	}
	if p.UUID == "" {
		return "", fmt.Errorf("%s is mounted from %s, which has no filesystem UUID", dir, src)
	}
	return p.UUID, nil
}

func dirHasEntries(h *Host, dir string) (bool, error) {
	ents, err := os.ReadDir(h.Path(dir))
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", dir, err)
	}
	return len(ents) > 0, nil
}

// emptyVolume removes what a failed move copied, keeping lost+found.
func emptyVolume(h *Host, dir string) error {
	ents, err := os.ReadDir(h.Path(dir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == "lost+found" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(h.Path(dir), e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// volumeHasData ignores mkfs's lost+found.
func volumeHasData(h *Host, dir string) (bool, error) {
	ents, err := os.ReadDir(h.Path(dir))
	if err != nil {
		return false, fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.Name() != "lost+found" {
			return true, nil
		}
	}
	return false, nil
}
