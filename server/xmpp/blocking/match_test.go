package blocking

import (
	"testing"

	"mellium.im/xmpp/blocklist"
	"mellium.im/xmpp/jid"
)

// The XEP-0191 3.7 rules, checked against mellium's implementation of them
// over every pair of items and senders.
func TestMatchKeysAgreeWithMellium(t *testing.T) {
	js := []string{
		"bob@example.org/phone", "bob@example.org/laptop", "bob@example.org",
		"carol@example.org/phone", "carol@example.org",
		"example.org/phone", "example.org", "other.example/phone", "other.example",
		"bob@other.example/phone",
	}
	matches := 0
	for _, item := range js {
		l := set{jid.MustParse(item).String(): {}}
		for _, from := range js {
			fj := jid.MustParse(from)
			got := false
			for _, k := range matchKeys(fj) {
				if _, ok := l[k]; ok {
					got = true
				}
			}
			if want := blocklist.Match(fj, jid.MustParse(item)); got != want {
				t.Errorf("item %s, sender %s: blocked=%v, want %v", item, from, got, want)
			}
			if got {
				matches++
			}
		}
	}
	// Guard against a vacuous agreement (nothing ever matching).
	if matches < len(js) {
		t.Fatalf("only %d matches", matches)
	}
}
