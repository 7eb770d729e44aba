package xmpp_test

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"

	"github.com/merveilles/hearth/server/servertest"
)

// BenchmarkMessageDelivery measures one 1:1 chat message from one client to
// another through the whole server (TLS, parse, route, serialize), with a
// window of messages in flight.
func BenchmarkMessageDelivery(b *testing.B) {
	// The per-connection rate limit would measure itself; turn it off.
	s := servertest.Start(b, func(c *config.Config) { c.Limits.ReadBytesPerSecond = 0 })
	s.AddUser(b, "alice", "pa")
	s.AddUser(b, "bob", "pb")
	a := servertest.DialRaw(b, s.Addr)
	a.Login("alice", "pa", "a", "")
	r := servertest.DialRaw(b, s.Addr)
	r.Login("bob", "pb", "b", "")
	r.Write("<presence/>")
	r.ReadUntil("/>")
	msg := "<message to='bob@localhost/b' type='chat'><body>hello there, this is a benchmark message</body></message>"
	done := make(chan int)
	go func() {
		_ = r.Conn.SetReadDeadline(time.Time{})
		br := bufio.NewReaderSize(r.Conn, 64<<10)
		n := 0
		for n < b.N {
			line, err := br.ReadString('>')
			if err != nil {
				break
			}
			if strings.HasSuffix(line, "</message>") {
				n++
			}
		}
		done <- n
	}()
	b.ResetTimer()
	batch := strings.Repeat(msg, 16)
	i := 0
	for ; i+16 <= b.N; i += 16 {
		a.Write(batch)
	}
	for ; i < b.N; i++ {
		a.Write(msg)
	}
	if got := <-done; got != b.N {
		b.Fatalf("delivered %d of %d", got, b.N)
	}
}
