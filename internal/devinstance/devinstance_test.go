package devinstance

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestStartAddUserStop(t *testing.T) {
	bin := Build(t)
	data := t.TempDir()
	in := Start(t, bin, Options{Data: data, Args: []string{"--e2ee", "off"}})
	if pw := AddUser(t, nil, bin, data, "bob@localhost", ""); !strings.HasPrefix(pw, "pw-") || len(pw) != 27 {
		t.Fatalf("password %q", pw)
	}
	if err := in.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, in.LogTail(30))
	}
	if !strings.Contains(in.LogTail(5), "stopped") {
		t.Fatalf("no clean stop in the log:\n%s", in.LogTail(30))
	}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(in.C2S))); err == nil {
		c.Close()
		t.Fatal("still listening after Stop")
	}
}
