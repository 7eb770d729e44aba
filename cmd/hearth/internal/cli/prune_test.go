package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
)

// seedPrune makes a dev data directory with three archived messages past
// the default 180 days and two recent ones, and one expired offline
// message next to a fresh one.
func seedPrune(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	st, err := boltstore.Open(filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	old := time.Now().Add(-200 * 24 * time.Hour)
	var recs []store.ArchiveRecord
	for i := 0; i < 3; i++ {
		recs = append(recs, store.ArchiveRecord{ID: uint64(old.UnixNano()) + uint64(i), With: "bob@localhost/x", Stanza: []byte("<message/>")})
	}
	for i := 0; i < 2; i++ {
		recs = append(recs, store.ArchiveRecord{ID: uint64(time.Now().UnixNano()) + uint64(i), With: "bob@localhost/x", Stanza: []byte("<message/>")})
	}
	if err := st.AppendArchive(ctx, "alice", recs...); err != nil {
		t.Fatal(err)
	}
	for _, age := range []time.Duration{40 * 24 * time.Hour, time.Hour} {
		m := fmt.Sprintf(`<message xmlns="jabber:client" to="bob@localhost"><body>x</body><delay xmlns="urn:xmpp:delay" from="localhost" stamp="%s"/></message>`,
			time.Now().Add(-age).UTC().Format("2006-01-02T15:04:05.000Z"))
		if err := st.PushOffline(ctx, "bob", []byte(m), 0); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

func TestPruneDryRunThenPrune(t *testing.T) {
	data := seedPrune(t)
	code, out, errOut := run(t, "", Prune, "--data", data, "--dry-run")
	if code != 0 {
		t.Fatalf("dry run: %d %s", code, errOut)
	}
	for _, want := range []string{"archive: would remove 3 messages older than", "(180d) from 1 user; 2 messages kept",
		"offline: would remove 1 message older than", "(30d)", "dry run: nothing was removed"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = run(t, "", Prune, "--data", data)
	if code != 0 || !strings.Contains(out, "archive: removed 3 messages") || !strings.Contains(out, "offline: removed 1 message ") || strings.Contains(out, "dry run") {
		t.Fatalf("prune: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, "", Prune, "--data", data)
	if code != 0 || !strings.Contains(out, "archive: removed 0 messages") || !strings.Contains(out, "2 messages kept") {
		t.Fatalf("second prune: %d\n%s", code, out)
	}
}

func TestPruneRefusesWhileTheDatabaseIsInUse(t *testing.T) {
	data := seedPrune(t)
	st, err := boltstore.Open(filepath.Join(data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	code, _, errOut := run(t, "", Prune, "--data", data)
	if code != ExitFail || !strings.Contains(errOut, "the daemon is running") || !strings.Contains(errOut, "prunes once a day") {
		t.Fatalf("prune with the database held: %d %s", code, errOut)
	}
	code, _, errOut = run(t, "", Prune, "--data", filepath.Join(t.TempDir(), "none"))
	if code != ExitFail || !strings.Contains(errOut, "no database") {
		t.Fatalf("prune without a database: %d %s", code, errOut)
	}
	code, out, _ := run(t, "", Prune, "--help")
	if code != 0 || !strings.Contains(out, "Usage:\n  hearth prune") || !strings.Contains(out, "--dry-run") {
		t.Fatalf("help: %s", out)
	}
}
