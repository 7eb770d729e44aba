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

// releaseFilePages unmaps, from this process's page tables, the pages of
// its read-only file mappings: its own code and constant data, and the
// database bbolt maps read-only.
//
// Starting hearth runs the init code of every package linked into the one
// binary — the installer's, the wizard's, the ACME client's — and the
// kernel maps 64 KiB around each page it faults in; logins touch database
// pages. That leaves ten MiB and more resident that a resting server does
// not use. The pages are clean and stay in the page cache: dropping the
// mappings frees nothing at once, but it turns them into plain cache that
// the kernel reclaims first under memory pressure, and RSS then shows
// what the server really uses. Pages still in use fault back in (a minor
// fault, no disk read while cached).
//
// Only a mapping that holds no anonymous page is dropped. A writable
// mapping, or one the dynamic linker wrote before making it read-only
// (RELRO in a cgo build), holds the process's own data, which dropping
// would lose.
func releaseFilePages() (released int64, err error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("read own mappings: %w", err)
	}
	defer f.Close()
	var (
		ranges [][2]uintptr
		cur    [2]uintptr
		inCur  bool
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if start, end, ok := mappingHeader(line); ok {
			cur, inCur = [2]uintptr{start, end}, releasable(line)
			continue
		}
		if !inCur {
			continue
		}
		if v, ok := strings.CutPrefix(line, "Anonymous:"); ok {
			if strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")) == "0" {
				ranges = append(ranges, cur)
			}
			inCur = false
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

// mappingHeader parses the address range of a mapping's first line in
// /proc/self/smaps ("start-end perms offset major:minor inode path").
func mappingHeader(line string) (start, end uintptr, ok bool) {
	addr, _, found := strings.Cut(line, " ")
	if !found {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(addr, "-")
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

// releasable reports whether a mapping's header names a non-writable
// mapping of a regular file (not the kernel's [vdso] and the like).
func releasable(header string) bool {
	fields := strings.Fields(header)
	if len(fields) < 6 {
		return false // anonymous: no path
	}
	perms := fields[1]
	if len(perms) != 4 || perms[1] == 'w' {
		return false
	}
	if ino, err := strconv.ParseUint(fields[4], 10, 64); err != nil || ino == 0 {
		return false
	}
	return strings.HasPrefix(fields[5], "/") && !strings.HasPrefix(fields[5], "/dev/")
}
