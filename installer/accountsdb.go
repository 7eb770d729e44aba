package installer

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// User is a line of the host's /etc/passwd.
type User struct {
	Name  string
	UID   int
	GID   int
	Home  string
	Shell string
}

// Group is a line of the host's /etc/group.
type Group struct {
	Name    string
	GID     int
	Members []string
}

// Has reports whether user is a listed member (primary groups are not
// listed in /etc/group and do not count: sshd's AllowGroups and sudo look at
// the supplementary list too, but setup only ever adds to it).
func (g Group) Has(user string) bool {
	for _, m := range g.Members {
		if m == user {
			return true
		}
	}
	return false
}

// AccountDB is the host's users and groups, read from its files rather than
// through NSS so a fake root works the same as the real one.
type AccountDB struct {
	Users  map[string]User
	Groups map[string]Group
}

// Accounts reads /etc/passwd and /etc/group under the host root.
func (h *Host) Accounts() (*AccountDB, error) {
	db := &AccountDB{Users: map[string]User{}, Groups: map[string]Group{}}
	pw, _, err := h.ReadFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	for _, f := range colonLines(pw) {
		if len(f) < 7 {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("/etc/passwd: bad line for %q", f[0])
		}
		db.Users[f[0]] = User{Name: f[0], UID: uid, GID: gid, Home: f[5], Shell: f[6]}
	}
	gr, _, err := h.ReadFile("/etc/group")
	if err != nil {
		return nil, err
	}
	for _, f := range colonLines(gr) {
		if len(f) < 4 {
			continue
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("/etc/group: bad line for %q", f[0])
		}
		g := Group{Name: f[0], GID: gid}
		if f[3] != "" {
			g.Members = strings.Split(f[3], ",")
		}
		db.Groups[f[0]] = g
	}
	return db, nil
}

// HumanUsers lists login users (UID 1000–59999, as Debian allocates them),
// the candidates for sysadmins and chat admins.
func (db *AccountDB) HumanUsers() []string {
	var out []string
	for _, name := range sortedKeys(db.Users) {
		u := db.Users[name]
		if u.UID >= 1000 && u.UID < 60000 {
			out = append(out, name)
		}
	}
	return out
}

func colonLines(b []byte) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
