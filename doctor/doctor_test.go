package doctor

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/supervisor/health"
	"github.com/merveilles/hearth/templates"
)

type fakeResolver struct {
	ips map[string][]string
	srv map[string][]*net.SRV
}

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	for _, s := range f.ips[host] {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func (f fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	recs := f.srv["_"+service+"._"+proto+"."+name]
	if len(recs) == 0 {
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return "", recs, nil
}

type fakeHost struct {
	env      *Env
	commands map[string]string // command line → output; missing fails
	files    map[string]string
	open     map[int]bool
	sample   health.Sample
	dir      string
}

const ufwGood = `Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)

To                         Action      From
--                         ------      ----
22/tcp                     LIMIT IN    Anywhere
80/tcp                     ALLOW IN    Anywhere
443/tcp                    ALLOW IN    Anywhere
5222/tcp                   ALLOW IN    Anywhere
5223/tcp                   ALLOW IN    Anywhere
`

// writeCert writes a CA-issued certificate for names, valid for left.
func writeCert(t *testing.T, path string, names []string, left time.Duration, selfSigned bool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour)}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(left)}
	parent, signer := ca, caKey
	if selfSigned {
		parent, signer = leaf, key
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newHost is a healthy host: every check passes.
func newHost(t *testing.T) *fakeHost {
	dir := t.TempDir()
	raw, err := templates.Config(templates.ConfigParams{Domain: "chat.example.org", DataDir: dir,
		CertFile: filepath.Join(dir, "fullchain.pem"), KeyFile: filepath.Join(dir, "key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "hearth.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	writeCert(t, filepath.Join(dir, "fullchain.pem"), []string{"chat.example.org", "rooms.chat.example.org", "share.chat.example.org"}, 60*24*time.Hour, false)
	f := &fakeHost{
		dir: dir,
		commands: map[string]string{
			"ufw status verbose":                          ufwGood,
			"nginx -t -q":                                 "",
			"systemctl is-active nginx":                   "active\n",
			"systemctl is-active hearth":                  "active\n",
			"timedatectl show -p NTPSynchronized --value": "yes\n",
			"apt-get -s -o Debug::NoLocking=1 upgrade":    "Reading package lists...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n",
		},
		files:  map[string]string{},
		open:   map[int]bool{5222: true, 5223: true, 80: true, 443: true},
		sample: health.Sample{MemTotal: 2 << 30, MemAvailable: 1 << 30, DiskTotal: 50 << 30, DiskFree: 40 << 30, Load1: 0.2, CPUs: 2},
	}
	res := fakeResolver{
		ips: map[string][]string{"chat.example.org": {"203.0.113.10", "2001:db8::10"}, "rooms.chat.example.org": {"203.0.113.10"}, "share.chat.example.org": {"203.0.113.10"}},
		srv: map[string][]*net.SRV{
			"_xmpp-client._tcp.chat.example.org":  {{Target: "chat.example.org.", Port: 5222}},
			"_xmpps-client._tcp.chat.example.org": {{Target: "chat.example.org.", Port: 5223}},
		},
	}
	f.env = &Env{
		ConfigPath: cfgPath,
		Resolver:   res,
		HostAddrs: func() ([]net.IP, error) {
			return []net.IP{net.ParseIP("203.0.113.10"), net.ParseIP("2001:db8::10")}, nil
		},
		Run: func(_ context.Context, name string, args ...string) ([]byte, error) {
			line := strings.Join(append([]string{name}, args...), " ")
			out, ok := f.commands[line]
			if !ok {
				return []byte(name + ": failed\n"), errors.New("exit status 1")
			}
			return []byte(out), nil
		},
		Dial: func(_ context.Context, _, addr string) (net.Conn, error) {
			_, p, _ := net.SplitHostPort(addr)
			var port int
			fmt.Sscan(p, &port)
			if !f.open[port] {
				return nil, errors.New("connection refused")
			}
			a, b := net.Pipe()
			b.Close()
			return a, nil
		},
		Exists: func(p string) bool { _, ok := f.files[p]; return ok },
		ReadFile: func(p string) ([]byte, error) {
			if c, ok := f.files[p]; ok {
				return []byte(c), nil
			}
			return os.ReadFile(p)
		},
		Health:      func(context.Context, string) (health.Sample, error) { return f.sample, nil },
		ClockSynced: func() (bool, error) { return true, nil },
		Now:         time.Now,
	}
	return f
}

func find(rep Report, category, check string) Result {
	for _, r := range rep.Results {
		if r.Category == category && strings.Contains(r.Check, check) {
			return r
		}
	}
	return Result{Level: -1, Message: "not found"}
}

func TestHealthyHostExitsZero(t *testing.T) {
	f := newHost(t)
	rep := Run(context.Background(), f.env)
	var text bytes.Buffer
	rep.WriteText(&text)
	if rep.ExitCode() != 0 || rep.Worst() != OK {
		t.Fatalf("healthy host: exit %d, worst %s\n%s", rep.ExitCode(), rep.Worst(), text.String())
	}
	for _, cat := range []string{"Configuration", "DNS", "Certificates", "Ports", "Firewall", "nginx", "Service", "Disk", "Memory", "Clock", "System"} {
		if !strings.Contains(text.String(), "\n"+cat+"\n") && !strings.HasPrefix(text.String(), cat+"\n") {
			t.Errorf("report has no %s section:\n%s", cat, text.String())
		}
	}
	var js struct {
		Worst   string   `json:"worst"`
		Exit    int      `json:"exit_code"`
		Results []Result `json:"results"`
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf.Bytes(), &struct {
		Worst *string `json:"worst"`
		Exit  *int    `json:"exit_code"`
	}{&js.Worst, &js.Exit}); err != nil || js.Worst != "ok" || js.Exit != 0 || !strings.Contains(buf.String(), `"category": "Firewall"`) {
		t.Errorf("json: %v %+v\n%s", err, js, buf.String())
	}
}

// Each problem alone turns the run into exit code 2 and is reported in
// its own check.
func TestEachProblemIsFound(t *testing.T) {
	for name, tc := range map[string]struct {
		break_          func(f *fakeHost)
		category, check string
		level           Level
		says            string
	}{
		"dns elsewhere": {func(f *fakeHost) {
			f.env.Resolver.(fakeResolver).ips["share.chat.example.org"] = []string{"198.51.100.1"}
		}, "DNS", "share.chat.example.org A/AAAA", Warn, "198.51.100.1"},
		"dns missing": {func(f *fakeHost) { delete(f.env.Resolver.(fakeResolver).ips, "rooms.chat.example.org") }, "DNS", "rooms.chat.example.org", Error, "no A or AAAA"},
		"srv missing": {func(f *fakeHost) {
			delete(f.env.Resolver.(fakeResolver).srv, "_xmpps-client._tcp.chat.example.org")
		}, "DNS", "_xmpps-client", Warn, "not set"},
		"srv wrong port": {func(f *fakeHost) {
			f.env.Resolver.(fakeResolver).srv["_xmpp-client._tcp.chat.example.org"][0].Port = 5269
		}, "DNS", "_xmpp-client", Error, "hearth listens on 5222"},
		"cert names": {func(f *fakeHost) {
			writeCert(t, filepath.Join(f.dir, "fullchain.pem"), []string{"chat.example.org"}, 60*24*time.Hour, false)
		}, "Certificates", "names", Error, "rooms.chat.example.org"},
		"cert self-signed": {func(f *fakeHost) {
			writeCert(t, filepath.Join(f.dir, "fullchain.pem"), []string{"chat.example.org", "rooms.chat.example.org", "share.chat.example.org"}, 300*24*time.Hour, true)
		}, "Certificates", "issuer", Warn, "self-signed"},
		"cert missing": {func(f *fakeHost) { os.Remove(filepath.Join(f.dir, "fullchain.pem")) }, "Certificates", "fullchain.pem", Error, "no such file"},
		"port closed":  {func(f *fakeHost) { f.open[5223] = false }, "Ports", "5223", Error, "nothing listening"},
		"ufw inactive": {func(f *fakeHost) { f.commands["ufw status verbose"] = "Status: inactive\n" }, "Firewall", "ufw", Error, "not active"},
		"ufw missing port": {func(f *fakeHost) {
			f.commands["ufw status verbose"] = strings.Replace(ufwGood, "5223/tcp                   ALLOW IN", "5224/tcp                   ALLOW IN", 1)
		}, "Firewall", "ufw", Error, "port 5223 is not allowed"},
		"nginx -t":     {func(f *fakeHost) { delete(f.commands, "nginx -t -q") }, "nginx", "nginx -t", Error, "failed"},
		"service down": {func(f *fakeHost) { f.commands["systemctl is-active hearth"] = "failed\n" }, "Service", "hearth", Error, "hearth is failed"},
		"disk":         {func(f *fakeHost) { f.sample.DiskFree = 500 << 20 }, "Disk", "data disk", Warn, "500.0 MiB free"},
		"memory":       {func(f *fakeHost) { f.sample.MemAvailable = 50 << 20 }, "Memory", "available", Warn, "50.0 MiB available"},
		"clock": {func(f *fakeHost) {
			f.commands["timedatectl show -p NTPSynchronized --value"] = "no\n"
		}, "Clock", "synchronised", Warn, "not NTP-synchronised"},
		"clock kernel": {func(f *fakeHost) {
			delete(f.commands, "timedatectl show -p NTPSynchronized --value")
			f.env.ClockSynced = func() (bool, error) { return false, nil }
		}, "Clock", "synchronised", Warn, "kernel says"},
		"reboot": {func(f *fakeHost) {
			f.files["/var/run/reboot-required"] = "*** System restart required ***\n"
			f.files["/var/run/reboot-required.pkgs"] = "linux-image-6.1.0-18-amd64\n"
		}, "System", "reboot", Warn, "linux-image-6.1.0-18-amd64"},
		"updates": {func(f *fakeHost) {
			f.commands["apt-get -s -o Debug::NoLocking=1 upgrade"] = "Inst openssl [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])\nInst tzdata [2024a-0] (2024b-0 Debian:12.7/stable [all])\n"
		}, "System", "security updates", Warn, "1 pending: openssl"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newHost(t)
			tc.break_(f)
			rep := Run(context.Background(), f.env)
			r := find(rep, tc.category, tc.check)
			if r.Level != tc.level || !strings.Contains(r.Message, tc.says) {
				t.Errorf("%s/%s: %s %q, want %s containing %q", tc.category, tc.check, r.Level, r.Message, tc.level, tc.says)
			}
			if rep.ExitCode() != 2 {
				t.Errorf("exit code %d, want 2", rep.ExitCode())
			}
			if r.Level >= Warn && r.Fix == "" && tc.category != "DNS" {
				t.Errorf("%s/%s has no fix", tc.category, tc.check)
			}
		})
	}
}

func TestCertificateExpiryLevels(t *testing.T) {
	for left, want := range map[time.Duration]Level{
		-time.Hour:          Error,
		12 * time.Hour:      Error,
		3 * 24 * time.Hour:  Warn,
		20 * 24 * time.Hour: Warn,
		45 * 24 * time.Hour: OK,
	} {
		f := newHost(t)
		writeCert(t, filepath.Join(f.dir, "fullchain.pem"), []string{"chat.example.org", "rooms.chat.example.org", "share.chat.example.org"}, left, false)
		r := find(Run(context.Background(), f.env), "Certificates", "expiry")
		if r.Level != want {
			t.Errorf("%s left: %s (%s), want %s", left, r.Level, r.Message, want)
		}
	}
}

// A configuration that does not load is the one finding; nothing else runs.
func TestBadConfigStopsEarly(t *testing.T) {
	f := newHost(t)
	os.WriteFile(f.env.ConfigPath, []byte("domain: chat.example.org\nlisten:\n  c2s_port: 99999\n"), 0o600)
	ran := false
	f.env.Run = func(context.Context, string, ...string) ([]byte, error) { ran = true; return nil, nil }
	rep := Run(context.Background(), f.env)
	if rep.ExitCode() != 2 || rep.Results[0].Level != Error || !strings.Contains(rep.Results[0].Message, "c2s_port") || ran {
		t.Errorf("bad config: exit %d, %+v, commands ran: %v", rep.ExitCode(), rep.Results, ran)
	}
}

// The kernel's clock state is readable here (adjtimex needs no privilege).
func TestKernelClockReadable(t *testing.T) {
	if _, err := kernelClockSynced(); err != nil {
		t.Fatal(err)
	}
}
