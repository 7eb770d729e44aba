//go:build linux

package supervisor

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func rssFileKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseExecutablePagesLowersFileRSS(t *testing.T) {
	before := rssFileKiB(t)
	n, err := releaseExecutablePages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	if n <= 0 {
		t.Fatalf("released %d bytes of mappings; the test binary's code was not found", n)
	}
	if after >= before {
		t.Fatalf("file-backed RSS %d KiB before, %d KiB after: nothing was released", before, after)
	}
	t.Logf("file-backed RSS %d KiB -> %d KiB (%d KiB of mappings released)", before, after, n>>10)
}

func TestReadOnlyMappingOfPicksOnlyTheExecutablesReadOnlyPrivatePages(t *testing.T) {
	exe := unix.Stat_t{Ino: 1234, Dev: unix.Mkdev(0xfd, 0x01)}
	cases := []struct {
		line string
		want bool
	}{
		{"00400000-00b4a000 r-xp 00000000 fd:01 1234    /usr/bin/hearth", true},
		{"00b4a000-01255000 r--p 0074a000 fd:01 1234    /usr/bin/hearth", true},
		{"01255000-012ec000 rw-p 00e55000 fd:01 1234    /usr/bin/hearth", false},          // data: written pages would be lost
		{"00400000-00b4a000 r-xs 00000000 fd:01 1234    /usr/bin/hearth", false},          // shared
		{"00400000-00b4a000 r-xp 00000000 fd:01 99      /usr/lib/other.so", false},        // another file
		{"00400000-00b4a000 r-xp 00000000 fd:02 1234    /mnt/hearth", false},              // same inode, other device
		{"00400000-00b4a000 r-xp 00000000 fd:01 1234    /usr/bin/hearth (deleted)", true}, // upgraded on disk, still ours
		{"7ffd1000-7ffd3000 r-xp 00000000 00:00 0       [vdso]", false},
		{"garbage", false},
	}
	for _, c := range cases {
		s, e, ok := readOnlyMappingOf(c.line, exe)
		if ok != c.want {
			t.Errorf("%q: got %v, want %v", c.line, ok, c.want)
		}
		if ok && (s != 0x00400000 && s != 0x00b4a000 || e <= s) {
			t.Errorf("%q: range %#x-%#x", c.line, s, e)
		}
	}
}
