//go:build interop

package interop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mucMembers are the ordinary accounts slixmpp_muc.py uses; mucChatAdmin
// is created with server role admin (a chat admin, the only kind of user
// who may make a room plaintext).
var (
	mucMembers   = []string{"alice", "bob", "carol", "dave"}
	mucChatAdmin = "chief"
)

// TestSlixmppMUC runs the group chat scenarios (slixmpp_muc.py, with
// slixmpp's xep_0045 and xep_0313 plugins) against an instance started
// with hearth dev's defaults, so rooms are end-to-end encrypted unless a
// chat admin says otherwise.
func TestSlixmppMUC(t *testing.T) {
	python := pythonWithSlixmpp(t)
	bin := buildHearth(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	c2s, direct := freePort(t), freePort(t)
	first := startHearthArgs(t, bin, data, c2s, direct)
	if err := first.stop(); err != nil {
		t.Fatalf("first start of hearth dev: %v\n%s", err, first.logTail(60))
	}
	var accounts strings.Builder
	for _, u := range mucMembers {
		fmt.Fprintf(&accounts, "%s %s\n", u, addUser(t, bin, data, u))
	}
	fmt.Fprintf(&accounts, "%s %s\n", mucChatAdmin, addUserRole(t, bin, data, mucChatAdmin, "admin"))
	accountsFile := filepath.Join(dir, "accounts.txt")
	if err := os.WriteFile(accountsFile, []byte(accounts.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startHearthArgs(t, bin, data, c2s, direct)
	args := []string{"slixmpp_muc.py",
		"--host", "127.0.0.1", "--domain", domain,
		"--c2s-port", strconv.Itoa(c2s), "--tls-port", strconv.Itoa(direct),
		"--cafile", filepath.Join(data, "cert.pem"),
		"--accounts", accountsFile,
	}
	if os.Getenv("HEARTH_INTEROP_DEBUG") != "" {
		args = append(args, "--debug")
	}
	if only := os.Getenv("HEARTH_INTEROP_MUC_ONLY"); only != "" {
		args = append(args, "--only", only)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, args...).CombinedOutput()
	if err != nil {
		t.Errorf("slixmpp MUC scenarios failed (%v):\n%s", err, out)
		t.Logf("server log (last lines):\n%s", srv.logTail(100))
	} else {
		t.Logf("slixmpp MUC scenarios:\n%s", out)
	}
	// A full passing run must have run every scenario, not none.
	n := strings.Count(string(out), "\nPASS ") + boolInt(strings.HasPrefix(string(out), "PASS "))
	if err == nil && os.Getenv("HEARTH_INTEROP_MUC_ONLY") == "" && n < 8 {
		t.Errorf("only %d MUC scenarios passed, want 8:\n%s", n, out)
	}
	if err := srv.stop(); err != nil {
		t.Errorf("stopping hearth dev: %v\n%s", err, srv.logTail(60))
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// addUserRole is addUser with a server role ("hearth admin user add
// --role").
func addUserRole(t *testing.T, bin, data, localpart, role string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	pw := "pw-" + hex.EncodeToString(b)
	cmd := exec.Command(bin, "admin", "--data", data, "user", "add", localpart+"@"+domain, "--password-stdin", "--role", role)
	cmd.Stdin = strings.NewReader(pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hearth admin user add %s --role %s: %v\n%s", localpart, role, err, out)
	}
	return pw
}
