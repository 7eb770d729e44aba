package mam_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/mam"
	hsasl "github.com/merveilles/hearth/server/xmpp/sasl"
)

// The archive the benchmark queries: one account with benchMessages
// messages from benchContacts contacts spread over 180 days, the retention
// default, so time ranges and contacts are realistic slices of it.
const (
	benchMessages = 1_000_000
	benchContacts = 100
	benchSpan     = 180 * 24 * time.Hour
)

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
	benchT0   time.Time
)

// TestMain removes the benchmark's archive, which is too big to leave in
// the temporary directory.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// buildBenchArchive writes the archive once per process, in batches
// through the store's own append (as the server writes), into a temporary
// data directory that the benchmarks' servers open.
func buildBenchArchive(b *testing.B) string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "hearth-mam-bench")
		if benchErr != nil {
			return
		}
		st, err := boltstore.Open(filepath.Join(benchDir, "hearth.db"))
		if err != nil {
			benchErr = err
			return
		}
		defer st.Close()
		ctx := context.Background()
		creds, err := hsasl.DeriveCredentials("alice", "pw", 4096)
		if err != nil {
			benchErr = err
			return
		}
		if err := st.CreateAccount(ctx, store.Account{Localpart: "alice", Role: store.RoleMember, Created: time.Now(), Scram: creds}); err != nil {
			benchErr = err
			return
		}
		start := time.Now()
		benchT0 = start.Add(-benchSpan)
		step := benchSpan / benchMessages
		const batch = 20000
		recs := make([]store.ArchiveRecord, 0, batch)
		for i := 0; i < benchMessages; i++ {
			contact := fmt.Sprintf("contact%03d@localhost", i%benchContacts)
			id := uint64(benchT0.Add(time.Duration(i) * step).UnixNano())
			msg := fmt.Sprintf(`<message xmlns="jabber:client" type="chat" id="m%d" from="%s/phone" to="alice@localhost"><body>message number %d, about the length of a short chat line</body></message>`, i, contact, i)
			recs = append(recs, store.ArchiveRecord{ID: id, With: contact + "/phone", Stanza: []byte(msg)})
			if len(recs) == batch || i == benchMessages-1 {
				if err := st.AppendArchive(ctx, "alice", recs...); err != nil {
					benchErr = err
					return
				}
				recs = recs[:0]
			}
		}
		size := int64(-1)
		if fi, err := os.Stat(filepath.Join(benchDir, "hearth.db")); err == nil {
			size = fi.Size()
		}
		fmt.Fprintf(os.Stderr, "built an archive of %d messages in %s (database file %d MB)\n", benchMessages, time.Since(start).Round(time.Second), size/1e6)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir
}

// BenchmarkQuery1M measures MAM query latency, from the IQ leaving a real
// client to the fin arriving with every result, on an archive of 1,000,000
// messages. Run with: make bench-mam (see the Makefile).
func BenchmarkQuery1M(b *testing.B) {
	dir := buildBenchArchive(b)
	s := servertest.Start(b, func(c *config.Config) { c.DataDir = dir; c.E2EE.Policy = "off" })
	c := s.Dial(b, "alice", "pw", "bench")
	day := benchT0.Add(90 * 24 * time.Hour)
	cases := []struct {
		name, inner string
		want        int
	}{
		{"last-page", rsm("<max>50</max><before/>"), 50},
		{"with-contact-last-page", form("with", "contact042@localhost") + rsm("<max>50</max><before/>"), 50},
		{"time-range-1h", form("start", day.UTC().Format(time.RFC3339), "end", day.Add(time.Hour).UTC().Format(time.RFC3339)) + rsm("<max>50</max>"), 50},
		{"with-contact-time-range-1d", form("with", "contact042@localhost", "start", day.UTC().Format(time.RFC3339), "end", day.Add(24*time.Hour).UTC().Format(time.RFC3339)) + rsm("<max>50</max>"), 48},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			// A few untimed queries first: the figures are the steady
			// state, not the first touch of cold pages.
			for i := 0; i < 3; i++ {
				benchQuery(b, c, tc.inner)
			}
			b.ResetTimer()
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				n := benchQuery(b, c, tc.inner)
				lat = append(lat, time.Since(t0))
				if n < tc.want {
					b.Fatalf("%s: %d results, want at least %d", tc.name, n, tc.want)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
		})
	}
}

var benchSeq int

// benchQuery runs one query and returns how many results arrived before
// its fin.
func benchQuery(b *testing.B, c *servertest.Client, inner string) int {
	benchSeq++
	qid := "b" + strconv.Itoa(benchSeq)
	iq := c.IQ(fmt.Sprintf("<iq type='set' id='%s'><query xmlns='urn:xmpp:mam:2' queryid='%s'>%s</query></iq>", qid, qid, inner))
	if iq.Get("type") != "result" {
		b.Fatalf("query failed: %s", iq)
	}
	n := 0
	// The results came before the IQ result on the stream, so they are
	// already buffered.
	for c.ExpectWithin(0, func(e *elem.Element) bool {
		r := e.Child(mam.NS, "result")
		return r != nil && r.Get("queryid") == qid
	}) != nil {
		n++
	}
	return n
}

// BenchmarkStoreQuery1M is the storage part of the same queries, without
// the network, XML and client: what the bbolt layout costs.
func BenchmarkStoreQuery1M(b *testing.B) {
	dir := buildBenchArchive(b)
	st, err := boltstore.Open(filepath.Join(dir, "hearth.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	day := uint64(benchT0.Add(90 * 24 * time.Hour).UnixNano())
	hour, dayNs := uint64(time.Hour), uint64(24*time.Hour)
	cases := []struct {
		name string
		q    store.ArchiveQuery
	}{
		{"last-page", store.ArchiveQuery{Max: 50, LastPage: true}},
		{"with-contact-last-page", store.ArchiveQuery{WithBare: "contact042@localhost", Max: 50, LastPage: true}},
		{"time-range-1h", store.ArchiveQuery{Start: day, End: day + hour, Max: 50}},
		{"with-contact-time-range-1d", store.ArchiveQuery{WithBare: "contact042@localhost", Start: day, End: day + dayNs, Max: 50}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				p, err := st.QueryArchive(context.Background(), "alice", tc.q)
				lat = append(lat, time.Since(t0))
				if err != nil || len(p.Records) < 40 {
					b.Fatalf("%s: %v, %d records", tc.name, err, len(p.Records))
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
		})
	}
}
