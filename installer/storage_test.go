package installer_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/installer/installertest"
)

const unitShowNotFound = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nNeedDaemonReload=no\nStatusText=\n"

func storageHost(t *testing.T, files map[string]string) (*installer.Host, *installertest.Runner) {
	// The fake hearth user owns what the test process owns, so ownership
	// checks see a correct host.
	files["/etc/passwd"] = fmt.Sprintf("root:x:0:0::/root:/bin/sh\nhearth:x:%d:%d::/var/lib/hearth:/usr/sbin/nologin\n", os.Getuid(), os.Getgid())
	files["/etc/group"] = fmt.Sprintf("root:x:0:\nhearth:x:%d:\n", os.Getgid())
	files["/dev/vdb"] = ""
	h, r := installertest.Host(t, files)
	os.MkdirAll(h.Path("/dev/disk/by-uuid"), 0o755) // udev runs here
	return h, r
}

func TestStorageNoVolume(t *testing.T) {
	h, _ := installertest.Host(t, nil)
	acts, err := installer.Storage{}.Plan(context.Background(), h)
	if err != nil || len(acts) != 0 {
		t.Fatalf("%v %q", err, summaries(acts))
	}
}

func TestStorageRefusesToFormatWithoutConfirmation(t *testing.T) {
	h, r := storageHost(t, map[string]string{})
	r.OnErr("blkid -p -o export /dev/vdb", installertest.ExitError{Code: 2})
	_, err := installer.Storage{Device: "/dev/vdb"}.Plan(context.Background(), h)
	if err == nil || !strings.Contains(err.Error(), "holds no filesystem") {
		t.Fatalf("%v", err)
	}
	// A partition table is not "empty", even when confirmed.
	r.On("blkid -p -o export /dev/vdb", "DEVNAME=/dev/vdb\nPTUUID=1234\nPTTYPE=gpt\n")
	_, err = installer.Storage{Device: "/dev/vdb", Format: true}.Plan(context.Background(), h)
	if err == nil || !strings.Contains(err.Error(), "partition table") {
		t.Fatalf("%v", err)
	}
	// A foreign filesystem is never formatted.
	r.On("blkid -p -o export /dev/vdb", "DEVNAME=/dev/vdb\nUUID=abcd\nTYPE=vfat\n")
	_, err = installer.Storage{Device: "/dev/vdb", Format: true}.Plan(context.Background(), h)
	if err == nil || !strings.Contains(err.Error(), "vfat") {
		t.Fatalf("%v", err)
	}
}

// A new empty volume on a host whose data is on the root disk: format,
// mount unit by UUID, data copied and verified, old copy kept aside.
func TestStorageNewVolumeMovesData(t *testing.T) {
	h, r := storageHost(t, map[string]string{"/var/lib/hearth/hearth.db": "db"})
	ctx := context.Background()
	formatted := false
	r.OnFunc("blkid -p -o export /dev/vdb", func([]byte) installertest.Reply {
		if !formatted {
			return installertest.Reply{Err: installertest.ExitError{Code: 2}}
		}
		return installertest.Reply{Out: "DEVNAME=/dev/vdb\nUUID=0f1e-uuid\nTYPE=ext4\nUSAGE=filesystem\n"}
	})
	r.OnErr("findmnt -rn -o SOURCE --mountpoint "+h.Path("/var/lib/hearth"), installertest.ExitError{Code: 1})
	r.On("systemctl show -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,StatusText var-lib-hearth.mount", unitShowNotFound)
	step := installer.Storage{Device: "/dev/vdb", Format: true}
	acts, err := step.Plan(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"run: mkfs.ext4 -q -L hearth-data /dev/vdb",
		"create /etc/systemd/system/var-lib-hearth.mount for the new filesystem's UUID",
		"run: systemctl daemon-reload",
		"run: systemctl enable var-lib-hearth.mount",
		"run: systemctl stop hearth.service",
		"move the data in /var/lib/hearth onto the volume (mount it at /var/lib/hearth-installer/new-volume, cp -a, diff -r, unmount; the old copy stays in /var/lib/hearth.before-volume)",
		"run: systemctl start var-lib-hearth.mount",
		"run: chown hearth:hearth /var/lib/hearth",
		"run: chmod 0750 /var/lib/hearth",
	}
	if got := summaries(acts); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n%s", strings.Join(got, "\n"))
	}

	r.OnFunc("mkfs.ext4 -q -L hearth-data /dev/vdb", func([]byte) installertest.Reply { formatted = true; return installertest.Reply{} })
	staging := h.Path("/var/lib/hearth-installer/new-volume")
	for _, c := range []string{
		"systemctl daemon-reload", "systemctl enable var-lib-hearth.mount", "systemctl stop hearth.service",
		"mount UUID=0f1e-uuid " + staging,
		"cp -a " + h.Path("/var/lib/hearth") + "/. " + staging + "/",
		"diff -r --no-dereference -x lost+found " + h.Path("/var/lib/hearth") + " " + staging,
		"umount " + staging,
		"systemctl start var-lib-hearth.mount", "chown hearth:hearth /var/lib/hearth", "chmod 0750 /var/lib/hearth",
	} {
		r.On(c, "")
	}
	if err := installer.Apply(ctx, h, []installer.Step{step}); err != nil {
		t.Fatal(err)
	}
	unit, _, _ := h.ReadFile("/etc/systemd/system/var-lib-hearth.mount")
	for _, line := range []string{"What=/dev/disk/by-uuid/0f1e-uuid", "Where=/var/lib/hearth", "Type=ext4", "Options=nofail,x-systemd.device-timeout=90s", "WantedBy=multi-user.target"} {
		if !strings.Contains(string(unit), "\n"+line+"\n") {
			t.Errorf("unit lacks %q:\n%s", line, unit)
		}
	}
	if b, _, _ := h.ReadFile("/var/lib/hearth.before-volume/hearth.db"); string(b) != "db" {
		t.Fatal("old data not kept aside")
	}
	if ents, err := os.ReadDir(h.Path("/var/lib/hearth")); err != nil || len(ents) != 0 {
		t.Fatalf("mount point not empty: %v %v", ents, err)
	}
	// The copy was verified before the original moved.
	calls := strings.Join(r.Calls(), "\n")
	if !(strings.Index(calls, "cp -a") < strings.Index(calls, "diff -r") && strings.Index(calls, "diff -r") < strings.Index(calls, "umount")) {
		t.Fatalf("order:\n%s", calls)
	}
}

// A copy that does not verify leaves the original data where it was.
func TestStorageFailedCopyKeepsData(t *testing.T) {
	h, r := storageHost(t, map[string]string{"/var/lib/hearth/hearth.db": "db"})
	r.On("blkid -p -o export /dev/vdb", "UUID=u1\nTYPE=ext4\n")
	r.OnErr("findmnt -rn -o SOURCE --mountpoint "+h.Path("/var/lib/hearth"), installertest.ExitError{Code: 1})
	r.On("systemctl show -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,StatusText var-lib-hearth.mount", unitShowNotFound)
	staging := h.Path("/var/lib/hearth-installer/new-volume")
	for _, c := range []string{"systemctl daemon-reload", "systemctl enable var-lib-hearth.mount", "systemctl stop hearth.service",
		"mount UUID=u1 " + staging, "cp -a " + h.Path("/var/lib/hearth") + "/. " + staging + "/", "umount " + staging} {
		r.On(c, "")
	}
	// cp "copies" one file onto the volume; diff then finds a difference.
	r.OnFunc("cp -a "+h.Path("/var/lib/hearth")+"/. "+staging+"/", func([]byte) installertest.Reply {
		installertest.WriteFile(t, h.Root, "/var/lib/hearth-installer/new-volume/hearth.db", "d")
		return installertest.Reply{}
	})
	r.OnErr("diff -r --no-dereference -x lost+found "+h.Path("/var/lib/hearth")+" "+staging, installertest.ExitError{Code: 1})
	err := installer.Apply(context.Background(), h, []installer.Step{installer.Storage{Device: "/dev/vdb"}})
	if err == nil || !strings.Contains(err.Error(), "the copy differs") {
		t.Fatalf("apply: %v", err)
	}
	if b, _, _ := h.ReadFile("/var/lib/hearth/hearth.db"); string(b) != "db" {
		t.Fatal("original data moved after a failed copy")
	}
	if h.Exists("/var/lib/hearth-installer/new-volume/hearth.db") {
		t.Fatal("the failed copy was left on the volume: a rerun would refuse")
	}
	calls := strings.Join(r.Calls(), "\n")
	if !strings.Contains(calls, "umount "+staging) || strings.Contains(calls, "systemctl start var-lib-hearth.mount") {
		t.Fatalf("calls:\n%s", calls)
	}
}

func TestStorageCorrectHostPlansNothing(t *testing.T) {
	h, r := storageHost(t, map[string]string{"/var/lib/hearth/hearth.db": "db"})
	unit := installer.MountUnit("/dev/disk/by-uuid/u1", "ext4", 0)
	installertest.WriteFile(t, h.Root, "/etc/systemd/system/var-lib-hearth.mount", string(unit))
	h.UpdateState(func(s *installer.State) { s.Files["/etc/systemd/system/var-lib-hearth.mount"] = installer.Hash(unit) })
	r.On("blkid -p -o export /dev/vdb", "UUID=u1\nTYPE=ext4\n")
	r.On("findmnt -rn -o SOURCE --mountpoint "+h.Path("/var/lib/hearth"), "/dev/vdb\n")
	r.On("systemctl show -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,StatusText var-lib-hearth.mount",
		"LoadState=loaded\nActiveState=active\nSubState=mounted\nUnitFileState=enabled\nNeedDaemonReload=no\n")
	acts, err := installer.Storage{Device: "/dev/vdb"}.Plan(context.Background(), h)
	if err != nil || len(acts) != 0 {
		t.Fatalf("%v %q", err, summaries(acts))
	}
	// Another filesystem already at /var/lib/hearth is not silently replaced.
	r.On("findmnt -rn -o SOURCE --mountpoint "+h.Path("/var/lib/hearth"), "/dev/vdc\n")
	r.On("blkid -p -o export /dev/vdc", "UUID=other\nTYPE=ext4\n")
	if _, err := (installer.Storage{Device: "/dev/vdb"}).Plan(context.Background(), h); err == nil || !strings.Contains(err.Error(), "another filesystem") {
		t.Fatalf("%v", err)
	}
}

// Without udev (a container) the unit names the device itself: the
// /dev/disk/by-uuid link would never appear.
func TestStorageWithoutUdevNamesTheDevice(t *testing.T) {
	h, r := storageHost(t, map[string]string{})
	os.RemoveAll(h.Path("/dev/disk"))
	r.On("blkid -p -o export /dev/vdb", "UUID=u1\nTYPE=ext4\n")
	r.OnErr("findmnt -rn -o SOURCE --mountpoint "+h.Path("/var/lib/hearth"), installertest.ExitError{Code: 1})
	r.On("systemctl show -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,StatusText var-lib-hearth.mount", unitShowNotFound)
	acts, err := installer.Storage{Device: "/dev/vdb"}.Plan(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(acts[0].Detail, "\nWhat=/dev/vdb\n") {
		t.Fatalf("%s", acts[0].Detail)
	}
}
