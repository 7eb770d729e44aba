package installer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/merveilles/hearth/server/config"
)

// Device is a block device the data volume could go on.
type Device struct {
	Path  string // /dev/vdb
	Bytes int64
	Probe Probe
	// InUse says why the device cannot be chosen (mounted, partitioned).
	InUse string
}

// Label is how the wizard lists the device.
func (d Device) Label() string {
	fs := "empty"
	switch {
	case d.Probe.Type != "":
		fs = d.Probe.Type
	case d.Probe.PTType != "":
		fs = d.Probe.PTType + " partition table"
	}
	s := fmt.Sprintf("%s  %s  %s", d.Path, humanBytes(d.Bytes), fs)
	if d.InUse != "" {
		s += "  (" + d.InUse + ")"
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// BlockDevices lists candidates from /sys/block (whole disks, their
// partitions, loop devices with a backing file) with blkid's view of each.
// udev may be absent (containers), so nothing depends on /dev/disk.
func BlockDevices(ctx context.Context, h *Host) ([]Device, error) {
	ents, err := os.ReadDir(h.Path("/sys/block"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	mounted := mountedSources(h)
	var out []Device
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "ram"), strings.HasPrefix(name, "zram"), strings.HasPrefix(name, "sr"), strings.HasPrefix(name, "fd"):
			continue
		case strings.HasPrefix(name, "loop") && !h.Exists("/sys/block/"+name+"/loop/backing_file"):
			continue
		}
		names := []string{name}
		parts, _ := os.ReadDir(h.Path("/sys/block/" + name))
		hasParts := false
		for _, p := range parts {
			if strings.HasPrefix(p.Name(), name) && h.Exists("/sys/block/"+name+"/"+p.Name()+"/partition") {
				names = append(names, name+"/"+p.Name())
				hasParts = true
			}
		}
		for _, n := range names {
			base := n[strings.LastIndex(n, "/")+1:]
			d := Device{Path: "/dev/" + base}
			if b, ok, _ := h.ReadFile("/sys/block/" + n + "/size"); ok {
				sectors, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				d.Bytes = sectors * 512
			}
			if d.Bytes == 0 || !h.Exists(d.Path) {
				continue
			}
			d.Probe, err = ProbeDevice(ctx, h, d.Path)
			if err != nil {
				return nil, err
			}
			switch {
			case mounted[d.Path] != "" && mounted[d.Path] != DataDir:
				d.InUse = "mounted at " + mounted[d.Path]
			case n == name && hasParts:
				d.InUse = "has partitions"
			case d.Probe.PTType != "":
				d.InUse = "partition table"
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// mountedSources maps a mounted device to its mount point, from the host's
// mountinfo.
func mountedSources(h *Host) map[string]string {
	m := map[string]string{}
	b, _, _ := h.ReadFile("/proc/self/mountinfo")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		if _, seen := m[g[1]]; !seen {
			m[g[1]] = f[4]
		}
	}
	return m
}

const noVolume = "none: keep data on the root disk"

// Ask runs the wizard. prev (the saved answers, or nil) gives the
// defaults; invoker is the sysadmin running setup (SUDO_USER).
func Ask(ctx context.Context, p Prompter, h *Host, prev *Answers, invoker string) (*Answers, error) {
	a := DefaultAnswers()
	if prev != nil {
		c := *prev
		a = &c
	}
	var err error
	if a.Domain, err = p.Input("Chat domain (accounts will be name@DOMAIN):", a.Domain, ValidateDomain); err != nil {
		return nil, err
	}
	if prev == nil || prev.Domain != a.Domain {
		a.RoomsDomain, a.ShareDomain = "", ""
	}
	a.withDefaults()
	notDomain := func(s string) error {
		if s == a.Domain {
			return errors.New("must differ from the chat domain")
		}
		return ValidateDomain(s)
	}
	if a.RoomsDomain, err = p.Input("Group chat (rooms) domain:", a.RoomsDomain, notDomain); err != nil {
		return nil, err
	}
	shareOK := func(s string) error {
		if s == a.RoomsDomain {
			return errors.New("must differ from the rooms domain")
		}
		return notDomain(s)
	}
	if a.ShareDomain, err = p.Input("File upload (share) domain:", a.ShareDomain, shareOK); err != nil {
		return nil, err
	}
	if a.ACMEEmail, err = p.Input("Contact email for the certificate authority (Let's Encrypt):", a.ACMEEmail, ValidateEmail); err != nil {
		return nil, err
	}
	if err := askDevice(ctx, p, h, a); err != nil {
		return nil, err
	}

	db, err := h.Accounts()
	if err != nil {
		return nil, err
	}
	users := db.HumanUsers()
	if len(users) == 0 {
		return nil, errors.New("this host has no login users (UID 1000 and up): create the sysadmins' accounts with adduser first")
	}
	defSys := a.Sysadmins
	if len(defSys) == 0 && invoker != "" {
		defSys = []string{invoker}
	}
	sysOK := func(sel []string) error {
		if len(sel) == 0 {
			return errors.New("choose at least one: only sysadmins may log in over SSH afterwards")
		}
		if invoker != "" && invoker != "root" && !containsStr(sel, invoker) {
			return fmt.Errorf("you (%s) must stay a sysadmin, or SSH would lock you out", invoker)
		}
		return nil
	}
	if a.Sysadmins, err = p.MultiSelect("Sysadmins (sudo, and the only users SSH lets in):", users, defSys, sysOK); err != nil {
		return nil, err
	}
	if a.ChatAdmins, err = p.MultiSelect("Chat admins on this host (may run \"hearth admin\", no sudo):", users, a.ChatAdmins, nil); err != nil {
		return nil, err
	}
	if a.FederationAllowed, err = p.Confirm("Allow federation with other XMPP servers at all (chat admins then choose per room)?", a.FederationAllowed); err != nil {
		return nil, err
	}
	for _, r := range []struct {
		msg   string
		v     *config.Duration
		check func(string) error
	}{
		{"Keep personal message archives for:", &a.Retention.PersonalArchive, ValidateRetention},
		{"Keep room archives for:", &a.Retention.RoomArchive, ValidateRoomRetention},
		{"Keep uploaded files for:", &a.Retention.Uploads, ValidateRetention},
		{"Keep undelivered (offline) messages for:", &a.Retention.OfflineMessages, ValidateRetention},
		{"Unused invites expire after:", &a.Retention.Invites, ValidateRetention},
	} {
		s, err := p.Input(r.msg, formatDays(r.v.D()), r.check)
		if err != nil {
			return nil, err
		}
		d, _ := config.ParseDuration(s)
		*r.v = config.Duration(d)
	}
	limit, err := p.Input("Largest upload, in MB:", strconv.Itoa(a.UploadLimitMB), func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10240 {
			return errors.New("a whole number of megabytes from 1 to 10240")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.UploadLimitMB, _ = strconv.Atoi(limit)
	if err := askLogin(p, a); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

func formatDays(d interface{ Hours() float64 }) string {
	h := d.Hours()
	if h >= 24 && int(h)%24 == 0 {
		return fmt.Sprintf("%dd", int(h)/24)
	}
	return fmt.Sprintf("%dh", int(h))
}

func askDevice(ctx context.Context, p Prompter, h *Host, a *Answers) error {
	devs, err := BlockDevices(ctx, h)
	if err != nil {
		return err
	}
	opts := []string{noVolume}
	byLabel := map[string]Device{}
	def := noVolume
	for _, d := range devs {
		l := d.Label()
		opts = append(opts, l)
		byLabel[l] = d
		if d.Path == a.DataDevice {
			def = l
		}
	}
	for {
		choice, err := p.Select("Block device for hearth's data (mounted at /var/lib/hearth):", opts, def)
		if err != nil {
			return err
		}
		if choice == noVolume {
			a.DataDevice, a.FormatDevice = "", ""
			return nil
		}
		d := byLabel[choice]
		if d.InUse != "" {
			if _, err := p.Input(fmt.Sprintf("%s cannot be used: %s. Press enter to choose again.", d.Path, d.InUse), "", nil); err != nil {
				return err
			}
			continue
		}
		a.DataDevice, a.FormatDevice = d.Path, ""
		if d.Probe.Type != "" {
			return nil
		}
		typed, err := p.Input(fmt.Sprintf("%s is empty. Type its name (%s) to format it as ext4; anything else chooses again:", d.Path, d.Path), "", nil)
		if err != nil {
			return err
		}
		if typed == d.Path {
			a.FormatDevice = d.Path
			return nil
		}
	}
}

const (
	loginOIDC    = "Keycloak (OIDC): members sign in with their Mastodon identity"
	loginInvites = "invites only: local accounts from invite links"
)

func askLogin(p Prompter, a *Answers) error {
	def := loginInvites
	if a.OIDC.Issuer != "" {
		def = loginOIDC
	}
	choice, err := p.Select("How do members sign in?", []string{loginOIDC, loginInvites}, def)
	if err != nil {
		return err
	}
	if choice == loginInvites {
		a.OIDC = OIDC{}
		return nil
	}
	if a.OIDC.Issuer, err = p.Input("Keycloak issuer URL (the realm URL):", a.OIDC.Issuer, ValidateIssuer); err != nil {
		return err
	}
	if a.OIDC.ClientID, err = p.Input("OIDC client id:", a.OIDC.ClientID, func(s string) error {
		if strings.TrimSpace(s) == "" {
			return errors.New("required")
		}
		return nil
	}); err != nil {
		return err
	}
	msg := "OIDC client secret:"
	if a.OIDC.ClientSecret != "" {
		msg = "OIDC client secret (enter keeps the saved one):"
	}
	had := a.OIDC.ClientSecret
	secret, err := p.Secret(msg, func(s string) error {
		if s == "" && had == "" {
			return errors.New("required")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if secret != "" {
		a.OIDC.ClientSecret = secret
	}
	return nil
}
