package elem

import (
	"bufio"
	"strings"
	"testing"
)

// Whatever a module puts in an element, the output must be XML a client can
// parse: characters XML cannot carry become U+FFFD, the rest survives.
func TestWriteToAlwaysWellFormed(t *testing.T) {
	junk := "ok <&>\"' \r\n\t \x00\x01\x1b \xff\xfe \xed\xa0\x80 \xef\xbf\xbe \xef\xbf\xbf ☺ \U0001F600"
	e := New(NSClient, "message", "id", junk)
	e.AddText(junk)
	out := e.String()
	d := NewDecoder(bufio.NewReader(strings.NewReader(testHeader+out)), Limits{MaxBytes: 1 << 16, MaxDepth: 4})
	if _, err := d.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	back, err := d.ReadElement()
	if err != nil {
		t.Fatalf("%q does not parse: %v", out, err)
	}
	want := "ok <&>\"' \r\n\t \uFFFD\uFFFD\uFFFD \uFFFD\uFFFD \uFFFD\uFFFD\uFFFD \uFFFD \uFFFD ☺ \U0001F600"
	if got := back.Get("id"); got != want {
		t.Errorf("attribute came back as %q, want %q", got, want)
	}
	if got := back.Text(); got != want {
		t.Errorf("text came back as %q, want %q", got, want)
	}
}
