//go:build interop

package interop

import (
	"context"
	"os"
	"os/exec"
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
	bin, dir, data, c2s, direct := newInstance(t, startHearthArgs)
	passwords := make(map[string]string)
	for _, u := range mucMembers {
		passwords[u] = addUser(t, bin, data, u)
	}
	passwords[mucChatAdmin] = addUserRole(t, bin, data, mucChatAdmin, "admin")
	accountsFile := writeAccounts(t, dir, passwords)
	srv := startHearthArgs(t, bin, data, c2s, direct)
	args := suiteArgs("slixmpp_muc.py", data, c2s, direct, accountsFile)
	if only := os.Getenv("HEARTH_INTEROP_MUC_ONLY"); only != "" {
		args = append(args, "--only", only)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, args...).CombinedOutput()
	if err != nil {
		t.Errorf("slixmpp MUC scenarios failed (%v):\n%s", err, out)
		t.Logf("server log (last lines):\n%s", srv.LogTail(100))
	} else {
		t.Logf("slixmpp MUC scenarios:\n%s", out)
	}
	// A full passing run must have run every scenario, not none.
	n := strings.Count("\n"+string(out), "\nPASS ")
	if err == nil && os.Getenv("HEARTH_INTEROP_MUC_ONLY") == "" && n < 8 {
		t.Errorf("only %d MUC scenarios passed, want 8:\n%s", n, out)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("stopping hearth dev: %v\n%s", err, srv.LogTail(60))
	}
}
