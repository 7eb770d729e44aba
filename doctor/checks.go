package doctor

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/supervisor/health"
)

func checkDNS(ctx context.Context, env *Env, cfg *config.Config) []Result {
	var out []Result
	mine, err := env.HostAddrs()
	if err != nil {
		return []Result{{Category: "DNS", Check: "host addresses", Level: Error, Message: err.Error()}}
	}
	for _, n := range names(cfg) {
		r := Result{Category: "DNS", Check: n + " A/AAAA"}
		addrs, err := env.Resolver.LookupIPAddr(ctx, n)
		switch {
		case err != nil || len(addrs) == 0:
			r.Level, r.Message = Error, fmt.Sprintf("no A or AAAA record (%v)", err)
			r.Fix = "add an A (and AAAA) record for " + n + " pointing at this host"
		default:
			var away []string
			var all []string
			for _, a := range addrs {
				all = append(all, a.IP.String())
				if !slices.ContainsFunc(mine, a.IP.Equal) {
					away = append(away, a.IP.String())
				}
			}
			if len(away) > 0 {
				r.Level = Warn
				r.Message = fmt.Sprintf("resolves to %s, not an address of this host (behind NAT this can be right)", strings.Join(away, ", "))
				r.Fix = "point " + n + " at this host; certificates stay self-signed until it does"
			} else {
				r.Message = "points here (" + strings.Join(all, ", ") + ")"
			}
		}
		out = append(out, r)
	}
	for _, srv := range []struct {
		service string
		port    uint16
		need    Level
	}{{"xmpp-client", uint16(cfg.Listen.C2SPort), Warn}, {"xmpps-client", uint16(cfg.Listen.TLSPort), Warn}, {"xmpp-server", 5269, OK}} {
		r := Result{Category: "DNS", Check: "_" + srv.service + "._tcp." + cfg.Domain}
		_, recs, err := env.Resolver.LookupSRV(ctx, srv.service, "tcp", cfg.Domain)
		switch {
		case err != nil || len(recs) == 0:
			r.Level = srv.need
			if srv.need == OK {
				r.Message = "not set (only needed when federation is enabled)"
			} else {
				r.Message = "not set; clients fall back to " + cfg.Domain
				r.Fix = fmt.Sprintf("add SRV _%s._tcp.%s 0 5 %d %s.", srv.service, cfg.Domain, srv.port, cfg.Domain)
			}
		default:
			var targets []string
			wrong := false
			for _, rec := range recs {
				targets = append(targets, fmt.Sprintf("%s:%d", strings.TrimSuffix(rec.Target, "."), rec.Port))
				if srv.service != "xmpp-server" && rec.Port != srv.port {
					wrong = true
				}
			}
			r.Message = strings.Join(targets, ", ")
			if wrong {
				r.Level = Error
				r.Message += fmt.Sprintf(" (hearth listens on %d)", srv.port)
				r.Fix = "make the SRV record's port match the configuration"
			}
		}
		out = append(out, r)
	}
	return out
}

func certPath(cfg *config.Config) string {
	if cfg.TLS.CertFile != "" {
		return cfg.TLS.CertFile
	}
	return filepath.Join(cfg.DataDir, "cert.pem")
}

func checkCertificates(ctx context.Context, env *Env, cfg *config.Config) []Result {
	path := certPath(cfg)
	r := Result{Category: "Certificates", Check: path}
	b, err := env.ReadFile(path)
	if err != nil {
		r.Level, r.Message, r.Fix = Error, err.Error(), "start hearth once (it writes a self-signed certificate) or rerun sudo hearth setup"
		return []Result{r}
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		r.Level, r.Message = Error, "no PEM certificate in the file"
		return []Result{r}
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		r.Level, r.Message = Error, err.Error()
		return []Result{r}
	}
	out := []Result{}
	var missing []string
	for _, n := range names(cfg) {
		if leaf.VerifyHostname(n) != nil {
			missing = append(missing, n)
		}
	}
	nr := Result{Category: "Certificates", Check: "names", Message: "covers " + strings.Join(names(cfg), ", ")}
	if len(missing) > 0 {
		nr.Level, nr.Message = Error, "does not cover "+strings.Join(missing, ", ")
		nr.Fix = "list every name under acme.names and let hearth renew (sudo systemctl reload hearth)"
	}
	out = append(out, nr)
	left := leaf.NotAfter.Sub(env.Now())
	er := Result{Category: "Certificates", Check: "expiry", Message: fmt.Sprintf("valid until %s (%d days)", leaf.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))}
	switch {
	case left < 24*time.Hour:
		er.Level, er.Fix = Error, "renew now: check the ACME errors in journalctl -u hearth"
		if left < 0 {
			er.Message = "expired on " + leaf.NotAfter.UTC().Format(time.DateOnly)
		}
	case left < 7*24*time.Hour:
		er.Level, er.Fix = Warn, "expires within a week; check the ACME errors in journalctl -u hearth"
	case left < 31*24*time.Hour:
		er.Level, er.Fix = Warn, "expires within a month although renewal starts at 30 days; check journalctl -u hearth"
	}
	out = append(out, er)
	ir := Result{Category: "Certificates", Check: "issuer", Message: leaf.Issuer.String()}
	if string(leaf.RawIssuer) == string(leaf.RawSubject) {
		ir.Level, ir.Message = Warn, "self-signed: clients will refuse or warn"
		ir.Fix = "point DNS at this host and enable acme in the configuration; hearth then gets a real certificate"
	}
	out = append(out, ir)
	return out
}

func checkPorts(ctx context.Context, env *Env, cfg *config.Config) []Result {
	var out []Result
	for _, p := range []struct {
		what string
		port int
	}{{"XMPP clients, STARTTLS", cfg.Listen.C2SPort}, {"XMPP clients, direct TLS", cfg.Listen.TLSPort}, {"HTTP (nginx)", 80}, {"HTTPS (nginx)", 443}} {
		if p.port <= 0 {
			continue
		}
		r := Result{Category: "Ports", Check: fmt.Sprintf("%d (%s)", p.port, p.what), Message: "listening"}
		c, err := env.Dial(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)))
		if err != nil {
			r.Level, r.Message, r.Fix = Error, "nothing listening: "+err.Error(), "sudo systemctl status hearth nginx"
		} else {
			c.Close()
		}
		out = append(out, r)
	}
	return out
}

func checkFirewall(ctx context.Context, env *Env, cfg *config.Config) []Result {
	r := Result{Category: "Firewall", Check: "ufw"}
	b, err := env.Run(ctx, "ufw", "status", "verbose")
	if err != nil {
		r.Level, r.Message, r.Fix = Error, "ufw status failed: "+firstLine(b, err), "sudo apt install ufw && sudo hearth setup"
		return []Result{r}
	}
	s := string(b)
	if !strings.Contains(s, "Status: active") {
		r.Level, r.Message, r.Fix = Error, "ufw is not active", "sudo hearth setup (it enables ufw with the planned rules)"
		return []Result{r}
	}
	var problems []string
	if !strings.Contains(s, "deny (incoming)") && !strings.Contains(s, "reject (incoming)") {
		problems = append(problems, "incoming traffic is not denied by default")
	}
	for _, p := range []int{80, 443, cfg.Listen.C2SPort, cfg.Listen.TLSPort} {
		if p > 0 && !allows(s, p) {
			problems = append(problems, fmt.Sprintf("port %d is not allowed", p))
		}
	}
	if len(problems) > 0 {
		r.Level, r.Message, r.Fix = Error, strings.Join(problems, "; "), "sudo hearth setup"
		return []Result{r}
	}
	r.Message = "active, default deny, hearth's ports allowed"
	return []Result{r}
}

// allows finds an ALLOW or LIMIT rule for port in ufw's table.
func allows(status string, port int) bool {
	for _, line := range strings.Split(status, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		to := strings.SplitN(f[0], "/", 2)[0]
		if to == strconv.Itoa(port) && (f[1] == "ALLOW" || f[1] == "LIMIT") {
			return true
		}
	}
	return false
}

func checkNginx(ctx context.Context, env *Env, cfg *config.Config) []Result {
	r := Result{Category: "nginx", Check: "nginx -t", Message: "configuration valid"}
	if b, err := env.Run(ctx, "nginx", "-t", "-q"); err != nil {
		r.Level, r.Message, r.Fix = Error, firstLine(b, err), "fix the file nginx names, then sudo systemctl reload nginx"
	}
	out := []Result{r}
	s := Result{Category: "nginx", Check: "service", Message: "active"}
	if b, err := env.Run(ctx, "systemctl", "is-active", "nginx"); err != nil || strings.TrimSpace(string(b)) != "active" {
		s.Level, s.Message, s.Fix = Error, "nginx is "+firstLine(b, err), "sudo systemctl start nginx"
	}
	return append(out, s)
}

func checkService(ctx context.Context, env *Env, cfg *config.Config) []Result {
	r := Result{Category: "Service", Check: "hearth.service", Message: "active"}
	b, err := env.Run(ctx, "systemctl", "is-active", "hearth")
	if err != nil || strings.TrimSpace(string(b)) != "active" {
		r.Level, r.Message, r.Fix = Error, "hearth is "+firstLine(b, err), "sudo systemctl start hearth; journalctl -u hearth -n 50"
	}
	return []Result{r}
}

func checkDisk(ctx context.Context, env *Env, cfg *config.Config) []Result {
	return sampleCheck(ctx, env, cfg, "Disk", "data disk", func(s health.Sample) (string, bool) {
		return fmt.Sprintf("%s free of %s on %s", health.Bytes(s.DiskFree), health.Bytes(s.DiskTotal), cfg.DataDir), strings.Contains(strings.Join(s.Warnings(health.Thresholds{}), ";"), "disk")
	}, "delete old uploads or shorten retention; grow the volume")
}

func checkMemory(ctx context.Context, env *Env, cfg *config.Config) []Result {
	return sampleCheck(ctx, env, cfg, "Memory", "available", func(s health.Sample) (string, bool) {
		return fmt.Sprintf("%s available of %s", health.Bytes(s.MemAvailable), health.Bytes(s.MemTotal)), strings.Contains(strings.Join(s.Warnings(health.Thresholds{}), ";"), "memory")
	}, "find what else uses memory (ps aux --sort=-rss | head); a bigger plan")
}

func sampleCheck(ctx context.Context, env *Env, cfg *config.Config, cat, check string, judge func(health.Sample) (string, bool), fix string) []Result {
	r := Result{Category: cat, Check: check}
	s, err := env.Health(ctx, cfg.DataDir)
	if err != nil {
		r.Level, r.Message = Error, err.Error()
		return []Result{r}
	}
	msg, bad := judge(s)
	r.Message = msg
	if bad {
		r.Level, r.Fix = Warn, fix
	}
	return []Result{r}
}

func checkClock(ctx context.Context, env *Env, cfg *config.Config) []Result {
	r := Result{Category: "Clock", Check: "synchronised", Message: "NTP synchronised"}
	b, err := env.Run(ctx, "timedatectl", "show", "-p", "NTPSynchronized", "--value")
	if err == nil {
		if strings.TrimSpace(string(b)) != "yes" {
			r.Level, r.Message, r.Fix = Warn, "the clock is not NTP-synchronised (TLS and message times depend on it)", "sudo timedatectl set-ntp true"
		}
		return []Result{r}
	}
	ok, kerr := env.ClockSynced()
	switch {
	case kerr != nil:
		r.Level, r.Message = Warn, fmt.Sprintf("cannot tell (timedatectl: %v; adjtimex: %v)", err, kerr)
	case !ok:
		r.Level, r.Message, r.Fix = Warn, "the kernel says the clock is not synchronised", "install and start chrony or systemd-timesyncd"
	default:
		r.Message = "synchronised (kernel)"
	}
	return []Result{r}
}

func checkReboot(ctx context.Context, env *Env, cfg *config.Config) []Result {
	r := Result{Category: "System", Check: "reboot", Message: "not required"}
	if env.Exists("/var/run/reboot-required") {
		r.Level, r.Message, r.Fix = Warn, "a reboot is required", "sudo reboot at a quiet time (clients reconnect by themselves)"
		if b, err := env.ReadFile("/var/run/reboot-required.pkgs"); err == nil && len(b) > 0 {
			r.Message += " (by " + strings.Join(strings.Fields(string(b)), ", ") + ")"
		}
	}
	return []Result{r}
}

func checkUpdates(ctx context.Context, env *Env, cfg *config.Config) []Result {
	r := Result{Category: "System", Check: "security updates", Message: "none pending"}
	b, err := env.Run(ctx, "apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade")
	if err != nil {
		r.Level, r.Message = Warn, "cannot ask apt: "+firstLine(b, err)
		return []Result{r}
	}
	var pkgs []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Inst ") && strings.Contains(strings.ToLower(line), "security") {
			pkgs = append(pkgs, strings.Fields(line)[1])
		}
	}
	if len(pkgs) > 0 {
		r.Level = Warn
		r.Message = fmt.Sprintf("%d pending: %s", len(pkgs), strings.Join(pkgs, ", "))
		r.Fix = "sudo apt update && sudo apt upgrade (or enable unattended-upgrades)"
	}
	return []Result{r}
}

func firstLine(b []byte, err error) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" && err != nil {
		s = err.Error()
	}
	if s == "" {
		s = "unknown"
	}
	return s
}
