// Package health samples what keeps a small host serving: memory, free
// space on the data volume and load. The daemon puts it in its systemd
// STATUS line and logs warnings; `hearth doctor` checks the same numbers.
package health

import (
	"context"
	"fmt"
	"runtime"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
)

// Sample is one reading of the host.
type Sample struct {
	MemTotal, MemAvailable uint64 // bytes
	RSS                    uint64 // this process, bytes
	DiskTotal, DiskFree    uint64 // the data directory's filesystem, bytes
	Load1                  float64
	CPUs                   int
}

// Thresholds below (or above, for load) which a reading is a warning.
type Thresholds struct {
	MemAvailableBytes uint64  // default 100 MiB
	MemAvailableRatio float64 // default 0.10
	DiskFreeBytes     uint64  // default 1 GiB
	DiskFreeRatio     float64 // default 0.10
	LoadPerCPU        float64 // default 2
}

// Defaults fills unset thresholds.
func (t Thresholds) Defaults() Thresholds {
	if t.MemAvailableBytes == 0 {
		t.MemAvailableBytes = 100 << 20
	}
	if t.MemAvailableRatio == 0 {
		t.MemAvailableRatio = 0.10
	}
	if t.DiskFreeBytes == 0 {
		t.DiskFreeBytes = 1 << 30
	}
	if t.DiskFreeRatio == 0 {
		t.DiskFreeRatio = 0.10
	}
	if t.LoadPerCPU == 0 {
		t.LoadPerCPU = 2
	}
	return t
}

// Read samples the host; dataDir is where hearth keeps its data.
func Read(ctx context.Context, dataDir string) (Sample, error) {
	s := Sample{CPUs: runtime.NumCPU()}
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return s, fmt.Errorf("memory: %w", err)
	}
	s.MemTotal, s.MemAvailable = vm.Total, vm.Available
	du, err := disk.UsageWithContext(ctx, dataDir)
	if err != nil {
		return s, fmt.Errorf("disk usage of %s: %w", dataDir, err)
	}
	s.DiskTotal, s.DiskFree = du.Total, du.Free
	la, err := load.AvgWithContext(ctx)
	if err != nil {
		return s, fmt.Errorf("load: %w", err)
	}
	s.Load1 = la.Load1
	if p, err := process.NewProcessWithContext(ctx, int32(processID())); err == nil {
		if mi, err := p.MemoryInfoWithContext(ctx); err == nil {
			s.RSS = mi.RSS
		}
	}
	return s, nil
}

// Warnings lists what is wrong with a sample, in words for a log or STATUS.
func (s Sample) Warnings(t Thresholds) []string {
	t = t.Defaults()
	var out []string
	if s.MemTotal > 0 && (s.MemAvailable < t.MemAvailableBytes || float64(s.MemAvailable) < t.MemAvailableRatio*float64(s.MemTotal)) {
		out = append(out, fmt.Sprintf("memory low: %s available of %s", Bytes(s.MemAvailable), Bytes(s.MemTotal)))
	}
	if s.DiskTotal > 0 && (s.DiskFree < t.DiskFreeBytes || float64(s.DiskFree) < t.DiskFreeRatio*float64(s.DiskTotal)) {
		out = append(out, fmt.Sprintf("data disk nearly full: %s free of %s", Bytes(s.DiskFree), Bytes(s.DiskTotal)))
	}
	if s.CPUs > 0 && s.Load1 > t.LoadPerCPU*float64(s.CPUs) {
		out = append(out, fmt.Sprintf("load high: %.2f on %d CPUs", s.Load1, s.CPUs))
	}
	return out
}

// Summary is the sample for the STATUS line.
func (s Sample) Summary() string {
	return fmt.Sprintf("disk free %s, mem available %s, rss %s, load %.2f",
		Bytes(s.DiskFree), Bytes(s.MemAvailable), Bytes(s.RSS), s.Load1)
}

// Bytes writes a size for people: 512 B, 3.2 MiB, 12.0 GiB.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
