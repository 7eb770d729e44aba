//go:build linux

package supervisor

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseExecutablePages unmaps, from this process's page tables, the
// read-only pages of its own executable (code and constant data).
//
// Starting hearth runs the init code of every package linked into the one
// binary — the installer's, the wizard's, the ACME client's — and the
// kernel maps 64 KiB around each page it faults in. That leaves most of the
// 15 MiB of code and tables resident although a resting server touches
// about one MiB of it. The pages are clean and stay in the page cache:
// dropping the mappings frees nothing at once, but it makes them plain
// cache the kernel reclaims first under memory pressure, and RSS then shows
// what the server really uses. Pages still in use fault back in (a minor
// fault, no disk read while cached). Writable mappings are never touched:
// for a private mapping that would discard the process's changes.
func releaseExecutablePages() (released int64, err error) {
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return 0, fmt.Errorf("stat own executable: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("read own mappings: %w", err)
	}
	defer f.Close()
	var ranges [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		start, end, ok := readOnlyMappingOf(sc.Text(), exe)
		if ok {
			ranges = append(ranges, [2]uintptr{start, end})
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read own mappings: %w", err)
	}
	for _, r := range ranges {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("madvise %#x-%#x: %w", r[0], r[1], errno)
		}
		released += int64(r[1] - r[0])
	}
	return released, nil
}

// readOnlyMappingOf parses one line of /proc/self/maps
// ("start-end perms offset major:minor inode path") and reports the range
// when it is a private, non-writable mapping of the file exe.
func readOnlyMappingOf(line string, exe unix.Stat_t) (start, end uintptr, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 5 {
		return 0, 0, false
	}
	perms := fields[1]
	if len(perms) != 4 || perms[1] == 'w' || perms[3] != 'p' {
		return 0, 0, false
	}
	if ino, err := strconv.ParseUint(fields[4], 10, 64); err != nil || ino != exe.Ino {
		return 0, 0, false
	}
	major, minor, found := strings.Cut(fields[3], ":")
	if !found {
		return 0, 0, false
	}
	maj, err1 := strconv.ParseUint(major, 16, 32)
	mnr, err2 := strconv.ParseUint(minor, 16, 32)
	if err1 != nil || err2 != nil || uint32(maj) != unix.Major(exe.Dev) || uint32(mnr) != unix.Minor(exe.Dev) {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(fields[0], "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
