package admin

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkImport imports b.N accounts at the default 10,000 SCRAM
// iterations on every core into a real database: ns/op is the wall time per
// account on this machine.
//
//	go test -run '^$' -bench Import -benchtime 2000x ./server/admin
func BenchmarkImport(b *testing.B) {
	cfg := testConfig(b)
	cfg.Auth.ScramIterations = 10000
	st := openStore(b, cfg)
	defer st.Close()
	ops := &Local{Store: st, Domain: cfg.Domain, ScramIterations: cfg.Auth.ScramIterations}
	entries := make([]Entry, b.N)
	for i := range entries {
		entries[i] = Entry{Line: i + 1, Localpart: fmt.Sprintf("u%07d", i), Password: fmt.Sprintf("password-%d", i)}
	}
	b.ResetTimer()
	res, err := Import(context.Background(), ops, entries, ImportOptions{})
	if err != nil || res.Created != b.N {
		b.Fatalf("import: %+v, %v", res, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accounts/s")
}
