//go:build linux

package supervisor

import (
	"bytes"
	"os"
	"path/filepath"
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

func TestReleaseFilePagesLowersFileRSS(t *testing.T) {
	before := rssFileKiB(t)
	n, err := releaseFilePages()
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

// A private mapping written before it was made read-only (what the dynamic
// linker does to RELRO) holds data the file does not: it must survive.
// A read-only shared mapping (bbolt's) reads the same after a release.
func TestReleaseFilePagesKeepsWrittenPrivatePages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	orig := bytes.Repeat([]byte("file"), 4096) // 4 pages
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	relro, err := unix.Mmap(int(f.Fd()), 0, len(orig), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(relro)
	copy(relro, "written by the process")
	if err := unix.Mprotect(relro, unix.PROT_READ); err != nil {
		t.Fatal(err)
	}
	shared, err := unix.Mmap(int(f.Fd()), 0, len(orig), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(shared)
	if !bytes.Equal(shared, orig) {
		t.Fatal("shared mapping does not show the file")
	}

	if _, err := releaseFilePages(); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(relro, []byte("written by the process")) {
		t.Fatalf("a written private page was dropped: %.30q", relro)
	}
	if !bytes.Equal(shared, orig) {
		t.Fatal("shared read-only mapping reads differently after a release")
	}
}

func TestReleasableMappings(t *testing.T) {
	cases := []struct {
		header string
		want   bool
	}{
		{"00400000-00b4a000 r-xp 00000000 fd:01 1234    /usr/bin/hearth", true},
		{"00b4a000-01255000 r--p 0074a000 fd:01 1234    /usr/bin/hearth", true},
		{"7f3323a19000-7f3323a21000 r--s 00000000 fd:01 77 /var/lib/hearth/hearth.db", true},
		{"7f3323a19000-7f3323a21000 r--s 00000000 fd:01 77 /var/lib/hearth/hearth.db (deleted)", true},
		{"01255000-012ec000 rw-p 00e55000 fd:01 1234    /usr/bin/hearth", false},
		{"7f0000000000-7f0000001000 rw-s 00000000 fd:01 88  /some/file", false},
		{"012ec000-03331000 rw-p 00000000 00:00 0 ", false},
		{"7ffd1000-7ffd3000 r-xp 00000000 00:00 0       [vdso]", false},
		{"7f0000000000-7f0000001000 r--s 00000000 00:05 9  /dev/dri/card0", false},
	}
	for _, c := range cases {
		if _, _, ok := mappingHeader(c.header); !ok {
			t.Errorf("%q: not parsed as a mapping header", c.header)
		}
		if got := releasable(c.header); got != c.want {
			t.Errorf("%q: releasable %v, want %v", c.header, got, c.want)
		}
	}
	for _, line := range []string{"Rss:                 164 kB", "VmFlags: rd ex mr mw me dw sd", "garbage"} {
		if _, _, ok := mappingHeader(line); ok {
			t.Errorf("%q parsed as a mapping header", line)
		}
	}
}
