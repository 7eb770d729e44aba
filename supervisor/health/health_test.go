package health

import (
	"context"
	"strings"
	"testing"
)

// A real reading of this machine has the totals a STATUS line needs.
func TestReadThisHost(t *testing.T) {
	s, err := Read(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s.MemTotal == 0 || s.MemAvailable == 0 || s.MemAvailable > s.MemTotal {
		t.Errorf("memory %d of %d", s.MemAvailable, s.MemTotal)
	}
	if s.DiskTotal == 0 || s.DiskFree > s.DiskTotal {
		t.Errorf("disk %d of %d", s.DiskFree, s.DiskTotal)
	}
	if s.RSS == 0 || s.CPUs == 0 {
		t.Errorf("rss %d, cpus %d", s.RSS, s.CPUs)
	}
	if sum := s.Summary(); !strings.Contains(sum, "disk free ") || !strings.Contains(sum, "iB") {
		t.Errorf("summary %q", sum)
	}
}

func TestWarningsAtThresholds(t *testing.T) {
	ok := Sample{MemTotal: 4 << 30, MemAvailable: 2 << 30, DiskTotal: 100 << 30, DiskFree: 50 << 30, Load1: 1, CPUs: 2}
	if w := ok.Warnings(Thresholds{}); len(w) != 0 {
		t.Errorf("healthy sample warns: %v", w)
	}
	for name, tc := range map[string]struct {
		mod  func(*Sample)
		want string
	}{
		"mem ratio":  {func(s *Sample) { s.MemAvailable = 300 << 20 }, "memory low"},
		"mem bytes":  {func(s *Sample) { s.MemTotal, s.MemAvailable = 512<<20, 90<<20 }, "memory low"},
		"disk ratio": {func(s *Sample) { s.DiskFree = 9 << 30 }, "data disk nearly full: 9.0 GiB free of 100.0 GiB"},
		"disk bytes": {func(s *Sample) { s.DiskTotal, s.DiskFree = 5<<30, 900<<20 }, "data disk nearly full"},
		"load":       {func(s *Sample) { s.Load1 = 4.5 }, "load high: 4.50 on 2 CPUs"},
	} {
		s := ok
		tc.mod(&s)
		w := s.Warnings(Thresholds{})
		if len(w) != 1 || !strings.Contains(w[0], tc.want) {
			t.Errorf("%s: warnings %v, want one with %q", name, w, tc.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 12 << 30: "12.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
