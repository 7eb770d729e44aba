package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux the tool targets (reading it
// needs sysconf, i.e. cgo).
const clockTicks = 100

type memSample struct {
	RSSKiB  int64 `json:"rss_kib"`
	PSSKiB  int64 `json:"pss_kib"`
	AnonKiB int64 `json:"anon_kib"` // RSS minus file-backed pages (binary, mmapped database)
	PeakKiB int64 `json:"peak_kib"` // VmHWM: the highest RSS since the process started
}

// readMem reads the process's resident and proportional set sizes.
func readMem(pid int) (memSample, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memSample{}, fmt.Errorf("server memory: %w", err)
	}
	defer f.Close()
	var m memSample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "Rss:":
			m.RSSKiB = v
		case "Pss:":
			m.PSSKiB = v
		case "Anonymous:":
			m.AnonKiB = v
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	peak, err := readPeakRSS(pid)
	m.PeakKiB = peak
	return m, err
}

// readPeakRSS reads VmHWM, the process's RSS high-water mark: a server
// that gives pages back after start-up still had them once.
func readPeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("server memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fs := strings.Fields(v)
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("server memory: no VmHWM in /proc/%d/status", pid)
}

// serverCPU returns the process's user+system CPU time.
func serverCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	// The command name may contain spaces; fields resume after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("server CPU: malformed /proc/%d/stat", pid)
	}
	fs := strings.Fields(string(b[i+1:]))
	// fs[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fs) < 13 {
		return 0, fmt.Errorf("server CPU: short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseNoFile lifts the descriptor limit so the tool can hold tens of
// thousands of sessions; as root the hard limit may be raised too.
func raiseNoFile(want uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur >= want {
		return rl.Cur, nil
	}
	nl := rl
	nl.Cur = want
	if nl.Max < want {
		nl.Max = want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl); err != nil {
		// Not root: settle for the hard limit.
		nl = syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl); err2 != nil {
			return rl.Cur, err
		}
		return rl.Max, nil
	}
	return want, nil
}

// meter measures server and tool CPU over one run.
type meter struct {
	pid         int
	start       time.Time
	srv0, tool0 time.Duration
	load0       float64
}

// loadAvg1 is the 1-minute load average (0 if unreadable): other work on
// the machine is recorded next to every number.
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

func startMeter(pid int) (*meter, error) {
	m := &meter{pid: pid, start: time.Now(), tool0: selfCPU(), load0: loadAvg1()}
	if pid > 0 {
		var err error
		if m.srv0, err = serverCPU(pid); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *meter) stop(r *Result) error {
	r.ElapsedSec = time.Since(m.start).Seconds()
	r.LoadAvg = [2]float64{m.load0, loadAvg1()}
	r.ToolCPUSec = (selfCPU() - m.tool0).Seconds()
	if m.pid > 0 {
		s, err := serverCPU(m.pid)
		if err != nil {
			return err
		}
		r.ServerCPUSec = (s - m.srv0).Seconds()
	}
	return nil
}
