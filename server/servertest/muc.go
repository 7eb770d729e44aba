package servertest

import (
	"fmt"

	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

// MUCStatus reports whether a room presence carries the status code
// (XEP-0045 <x xmlns='…muc#user'><status code=…/>).
func MUCStatus(p *elem.Element, code string) bool {
	x := p.Child(muc.NSUser, "x")
	if x == nil {
		return false
	}
	for _, s := range x.Elements() {
		if s.Name.Local == "status" && s.Get("code") == code {
			return true
		}
	}
	return false
}

// EnterRoom joins the room as occupant (room@service/nick) and waits for
// the subject, which ends a join (XEP-0045 7.2.16); a refused join fails
// the test.
func (c *Client) EnterRoom(occupant string) {
	c.t.Helper()
	c.SendRaw(fmt.Sprintf("<presence to='%s'><x xmlns='%s'/></presence>", occupant, muc.NS))
	self := c.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "presence" && e.Get("from") == occupant && (MUCStatus(e, "110") || e.Get("type") == "error")
	})
	if self.Get("type") == "error" {
		c.t.Fatalf("%s could not join %s: %s", c.JID, occupant, self)
	}
	c.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "message" && e.Child(elem.NSClient, "subject") != nil
	})
}
