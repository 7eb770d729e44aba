package installer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// UFW is the firewall step: deny incoming by default, rate-limit SSH on
// every port sshd listens on, open the web and XMPP ports, and s2s only
// when the sysadmin allowed federation.
//
// The wanted state is compared with ufw's own files (/etc/default/ufw,
// /etc/ufw/ufw.conf, /etc/ufw/user.rules) rather than "ufw status", which
// lists no rules while ufw is inactive.
type UFW struct {
	Federation bool
}

// Name implements Step.
func (UFW) Name() string { return "firewall (ufw)" }

// publicPorts are always open: HTTP (ACME, redirect), HTTPS (portal,
// uploads, websocket), XMPP clients with STARTTLS and with direct TLS.
var publicPorts = []int{80, 443, 5222, 5223}

const s2sPort = 5269

// Plan implements Step.
func (u UFW) Plan(ctx context.Context, h *Host) ([]Action, error) {
	if !h.Exists("/usr/sbin/ufw") {
		return nil, fmt.Errorf("ufw is not installed (apt install ufw)")
	}
	sshPorts, err := SSHPorts(ctx, h)
	if err != nil {
		return nil, err
	}
	cur, err := h.ufwState()
	if err != nil {
		return nil, err
	}
	var acts []Action
	if cur.defaultInput != "DROP" {
		acts = append(acts, RunAction("ufw", "default", "deny", "incoming"))
	}
	// SSH first: enabling ufw before its rule exists would cut the
	// sysadmin's session.
	for _, p := range sshPorts {
		if cur.rules[p] != "limit" {
			acts = append(acts, RunAction("ufw", "limit", fmt.Sprintf("%d/tcp", p)))
		}
	}
	want := append([]int(nil), publicPorts...)
	if u.Federation {
		want = append(want, s2sPort)
	}
	for _, p := range want {
		if contains(sshPorts, p) {
			continue
		}
		if cur.rules[p] != "allow" {
			acts = append(acts, RunAction("ufw", "allow", fmt.Sprintf("%d/tcp", p)))
		}
	}
	if !u.Federation && !contains(sshPorts, s2sPort) {
		if a, ok := cur.rules[s2sPort]; ok {
			acts = append(acts, RunAction("ufw", "delete", a, fmt.Sprintf("%d/tcp", s2sPort)))
		}
	}
	if !cur.enabled {
		// --force: ufw asks for confirmation otherwise, and the SSH rule
		// above is what keeps the session.
		acts = append(acts, RunAction("ufw", "--force", "enable"))
	} else if len(acts) > 0 {
		acts = append(acts, RunAction("ufw", "reload"))
	}
	return acts, nil
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// SSHPorts returns the ports sshd listens on, from "sshd -T" (its effective
// configuration). No sshd installed means none.
func SSHPorts(ctx context.Context, h *Host) ([]int, error) {
	if !h.Exists("/usr/sbin/sshd") {
		return nil, nil
	}
	out, err := h.Cmd(ctx, "/usr/sbin/sshd", "-T")
	if err != nil {
		return nil, fmt.Errorf("read sshd's ports: %w", err)
	}
	seen := map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "port" {
			p, err := strconv.Atoi(f[1])
			if err != nil || p < 1 || p > 65535 {
				return nil, fmt.Errorf("sshd -T: bad port %q", f[1])
			}
			seen[p] = true
		}
		// "listenaddress 0.0.0.0:2222" may name ports beyond "port".
		if len(f) == 2 && f[0] == "listenaddress" {
			if i := strings.LastIndex(f[1], ":"); i > 0 {
				if p, err := strconv.Atoi(f[1][i+1:]); err == nil && p > 0 && p < 65536 {
					seen[p] = true
				}
			}
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("sshd -T printed no port")
	}
	var ports []int
	for p := range seen {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	return ports, nil
}

type ufwState struct {
	enabled      bool
	defaultInput string
	// rules maps a TCP port open to anywhere to its action (allow, limit,
	// deny, reject).
	rules map[int]string
}

func (h *Host) ufwState() (ufwState, error) {
	st := ufwState{rules: map[int]string{}}
	conf, _, err := h.ReadFile("/etc/ufw/ufw.conf")
	if err != nil {
		return st, err
	}
	st.enabled = shellVar(conf, "ENABLED") == "yes"
	def, _, err := h.ReadFile("/etc/default/ufw")
	if err != nil {
		return st, err
	}
	st.defaultInput = shellVar(def, "DEFAULT_INPUT_POLICY")
	rules, _, err := h.ReadFile("/etc/ufw/user.rules")
	if err != nil {
		return st, err
	}
	sc := bufio.NewScanner(bytes.NewReader(rules))
	for sc.Scan() {
		// ### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in
		rest, ok := strings.CutPrefix(sc.Text(), "### tuple ### ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 7 || f[1] != "tcp" || f[3] != "0.0.0.0/0" || f[4] != "any" || f[5] != "0.0.0.0/0" || f[6] != "in" {
			continue
		}
		p, err := strconv.Atoi(f[2])
		if err != nil {
			continue // ranges and lists are not setup's
		}
		st.rules[p] = f[0]
	}
	return st, nil
}

// shellVar reads KEY=value or KEY="value" from a shell-style file.
func shellVar(b []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	v := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, val, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			v = strings.Trim(strings.TrimSpace(val), `"'`)
		}
	}
	return v
}
