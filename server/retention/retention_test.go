package retention_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/retention"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func id(t time.Time, n int) uint64 { return uint64(t.UnixNano()) + uint64(n) }

func offlineStanza(stamp time.Time, body string) []byte {
	return []byte(fmt.Sprintf(`<message xmlns="jabber:client" to="bob@localhost" from="alice@localhost/a" type="chat"><body>%s</body><delay xmlns="urn:xmpp:delay" from="localhost" stamp="%s"/></message>`,
		body, stamp.UTC().Format("2006-01-02T15:04:05.000Z")))
}

// seed fills alice's archive with old and recent messages from two
// contacts (more old ones than one prune chunk) and bob's offline queue
// with old, recent and unstamped messages.
func seed(t *testing.T) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	old, recent := now.Add(-200*24*time.Hour), now.Add(-10*24*time.Hour)
	var recs []store.ArchiveRecord
	for i := 0; i < 12000; i++ {
		with := "carol@localhost/x"
		if i%3 == 0 {
			with = "bob@localhost/y"
		}
		recs = append(recs, store.ArchiveRecord{ID: id(old, i), With: with, Stanza: []byte("<message/>")})
	}
	for i := 0; i < 7; i++ {
		recs = append(recs, store.ArchiveRecord{ID: id(recent, i), With: "bob@localhost/y", Stanza: []byte("<message/>")})
	}
	if err := st.AppendArchive(ctx, "alice", recs...); err != nil {
		t.Fatal(err)
	}
	for _, m := range [][]byte{
		offlineStanza(now.Add(-40*24*time.Hour), "old"),
		offlineStanza(now.Add(-2*24*time.Hour), "recent"),
		[]byte(`<message xmlns="jabber:client" to="bob@localhost"><body>no stamp</body></message>`),
		offlineStanza(now.Add(-31*24*time.Hour), "old too"),
	} {
		if err := st.PushOffline(ctx, "bob", m, 0); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func count(t *testing.T, st *boltstore.Store, with string) int {
	t.Helper()
	p, err := st.QueryArchive(context.Background(), "alice", store.ArchiveQuery{WithBare: with, Max: 0})
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func TestPrune(t *testing.T) {
	st := seed(t)
	ctx := context.Background()
	cfg := config.Default("localhost").Retention
	var calls int
	rep, err := retention.Prune(ctx, st, cfg, retention.Options{DryRun: true, Now: now, Progress: func(string, int, int, int) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Archive.Removed != 12000 || rep.Archive.Kept != 7 || rep.Offline.Removed != 2 || rep.Offline.Kept != 2 || calls == 0 {
		t.Fatalf("dry run: %+v (progress calls %d)", rep, calls)
	}
	if n := count(t, st, ""); n != 12007 {
		t.Fatalf("a dry run removed messages: %d left", n)
	}
	if n, _ := st.CountOffline(ctx, "bob"); n != 4 {
		t.Fatalf("a dry run removed offline messages: %d left", n)
	}

	rep, err = retention.Prune(ctx, st, cfg, retention.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Archive.Removed != 12000 || rep.Archive.Users != 1 || rep.Offline.Removed != 2 || rep.Offline.Users != 1 {
		t.Fatalf("prune: %+v", rep)
	}
	if n := count(t, st, ""); n != 7 {
		t.Fatalf("after prune %d archived, want 7", n)
	}
	if c, b := count(t, st, "carol@localhost"), count(t, st, "bob@localhost"); c != 0 || b != 7 {
		t.Fatalf("per-contact counts after prune: carol %d bob %d", c, b)
	}
	p, err := st.QueryArchive(ctx, "alice", store.ArchiveQuery{WithBare: "bob@localhost", Max: 100})
	if err != nil || len(p.Records) != 7 || p.Records[0].Time().Before(now.Add(-180*24*time.Hour)) {
		t.Fatalf("remaining records: %v %+v", err, p)
	}
	left, err := st.PopOffline(ctx, "bob")
	if err != nil || len(left) != 2 {
		t.Fatalf("offline left: %v %q", err, left)
	}
	for _, m := range left {
		if s := string(m); !(contains(s, ">recent<") || contains(s, ">no stamp<")) {
			t.Fatalf("kept the wrong offline message: %s", s)
		}
	}
	// A second run finds nothing.
	rep, err = retention.Prune(ctx, st, cfg, retention.Options{Now: now})
	if err != nil || rep.Archive.Removed != 0 || rep.Offline.Removed != 0 {
		t.Fatalf("second run: %v %+v", err, rep)
	}
}

func TestPruneDisabled(t *testing.T) {
	st := seed(t)
	rep, err := retention.Prune(context.Background(), st, config.Retention{}, retention.Options{Now: now})
	if err != nil || !rep.ArchiveDisabled || !rep.OfflineDisabled || rep.Archive.Removed != 0 {
		t.Fatalf("disabled: %v %+v", err, rep)
	}
	if n := count(t, st, ""); n != 12007 {
		t.Fatalf("retention 0 removed messages: %d left", n)
	}
}

func TestOfflineStamp(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	got, ok := retention.OfflineStamp(offlineStanza(ts, "x"))
	if !ok || !got.Equal(ts) {
		t.Fatalf("stamp %v %v", got, ok)
	}
	if _, ok := retention.OfflineStamp([]byte("<message")); ok {
		t.Fatal("a broken stanza has no stamp")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
