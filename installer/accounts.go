package installer

import (
	"context"
	"fmt"
	"strings"
)

// Groups setup manages.
const (
	SysadminGroup = "hearth-sysadmin"
	AdminGroup    = "hearth-admin"
	// ServiceUser runs the daemon (created by the package's postinst).
	ServiceUser = "hearth"
	sshDropIn   = "/etc/ssh/sshd_config.d/hearth.conf"
)

// Accounts is the step for the two kinds of admin (DESIGN.md decision 9):
// sysadmins in sudo and hearth-sysadmin, the only group sshd lets in; chat
// admins in hearth-admin, which may use the daemon's admin socket and has
// no sudo.
type Accounts struct {
	Sysadmins  []string
	ChatAdmins []string
	// Invoker is the user running setup (SUDO_USER): setup refuses a plan
	// that would shut them out of SSH.
	Invoker string
}

// Name implements Step.
func (Accounts) Name() string { return "accounts" }

// SSHDropIn is the sshd configuration that lets only sysadmins in.
func SSHDropIn() []byte {
	return []byte(`# Written by "hearth setup": only sysadmins (group ` + SysadminGroup + `) may log in
# over SSH. Add a sysadmin with "sudo hearth setup" (or gpasswd -a USER ` + SysadminGroup + `).
AllowGroups ` + SysadminGroup + `
`)
}

// Plan implements Step.
func (a Accounts) Plan(ctx context.Context, h *Host) ([]Action, error) {
	if len(a.Sysadmins) == 0 {
		return nil, fmt.Errorf("no sysadmin named: SSH would let nobody in (name at least one existing Unix user)")
	}
	if a.Invoker != "" && a.Invoker != "root" && !containsStr(a.Sysadmins, a.Invoker) {
		return nil, fmt.Errorf("you (%s) are not among the sysadmins %v: SSH would lock you out; add yourself", a.Invoker, a.Sysadmins)
	}
	db, err := h.Accounts()
	if err != nil {
		return nil, err
	}
	for _, u := range append(append([]string(nil), a.Sysadmins...), a.ChatAdmins...) {
		if _, ok := db.Users[u]; !ok {
			return nil, fmt.Errorf("user %q does not exist on this host (create it first with adduser)", u)
		}
	}
	if _, ok := db.Groups["sudo"]; !ok {
		return nil, fmt.Errorf("group sudo does not exist (apt install sudo)")
	}
	var acts []Action
	for _, g := range []string{SysadminGroup, AdminGroup} {
		if _, ok := db.Groups[g]; !ok {
			acts = append(acts, RunAction("groupadd", "--system", g))
		}
	}
	member := func(user, group string) bool {
		g, ok := db.Groups[group]
		return ok && g.Has(user)
	}
	for _, u := range a.Sysadmins {
		for _, g := range []string{"sudo", SysadminGroup} {
			if !member(u, g) {
				acts = append(acts, RunAction("gpasswd", "-a", u, g))
			}
		}
	}
	// The daemon gives its admin socket to hearth-admin; a process without
	// capabilities may only chown to a group it belongs to.
	chatGroup := append([]string(nil), a.ChatAdmins...)
	if _, ok := db.Users[ServiceUser]; ok && !containsStr(chatGroup, ServiceUser) {
		chatGroup = append(chatGroup, ServiceUser)
	}
	for _, u := range chatGroup {
		if !member(u, AdminGroup) {
			acts = append(acts, RunAction("gpasswd", "-a", u, AdminGroup))
		}
	}
	// Whoever is no longer named loses the group setup gave them. sudo is
	// left alone: it may have been granted for other reasons.
	for _, g := range []struct {
		name string
		want []string
	}{{SysadminGroup, a.Sysadmins}, {AdminGroup, chatGroup}} {
		for _, m := range db.Groups[g.name].Members {
			if !containsStr(g.want, m) {
				acts = append(acts, RunAction("gpasswd", "-d", m, g.name))
			}
		}
	}
	if !h.Exists("/usr/sbin/sshd") {
		return acts, nil
	}
	main, _, err := h.ReadFile("/etc/ssh/sshd_config")
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(main), "sshd_config.d/*.conf") {
		return nil, fmt.Errorf("/etc/ssh/sshd_config does not include sshd_config.d/*.conf, so the AllowGroups drop-in would be ignored; add \"Include /etc/ssh/sshd_config.d/*.conf\" at its top")
	}
	fileActs, err := h.FileActions(File{
		Path:    sshDropIn,
		Content: SSHDropIn(),
		Mode:    0o644,
		Verify: func(ctx context.Context, h *Host) error {
			_, err := h.Cmd(ctx, "/usr/sbin/sshd", "-t")
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	if len(fileActs) > 0 && fileActs[0].Blocked == "" && !strings.HasPrefix(fileActs[0].Summary, "record") {
		// sshd reads the drop-in on reload; running sessions stay.
		fileActs = append(fileActs, RunAction("systemctl", "reload-or-restart", "ssh.service"))
	}
	return append(acts, fileActs...), nil
}

func containsStr(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
