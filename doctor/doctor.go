// Package doctor checks a hearth host the way `prosodyctl check` and
// Mail-in-a-Box's status checks do: configuration, DNS, certificates,
// ports, firewall, nginx, the service, disk, memory, clock, reboots and
// updates. Every outside fact comes through Env, so each check is tested
// with injected answers; Run aggregates them into a Report.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/supervisor/health"
)

// Level is how bad a finding is.
type Level int

// Levels, in increasing gravity.
const (
	OK Level = iota
	Skipped
	Warn
	Error
)

func (l Level) String() string {
	return [...]string{"ok", "skipped", "warning", "error"}[l]
}

// MarshalText writes the level as a word in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// Result is one finding.
type Result struct {
	Category string `json:"category"`
	Check    string `json:"check"`
	Level    Level  `json:"level"`
	Message  string `json:"message"`
	Fix      string `json:"fix,omitempty"`
}

// Resolver answers DNS questions; *net.Resolver is one.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Env is the outside world as the checks see it.
type Env struct {
	ConfigPath string
	Resolver   Resolver
	HostAddrs  func() ([]net.IP, error)
	// Run runs a command and returns its combined output.
	Run  func(ctx context.Context, name string, args ...string) ([]byte, error)
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Exists and ReadFile see the host's files.
	Exists   func(path string) bool
	ReadFile func(path string) ([]byte, error)
	Health   func(ctx context.Context, dataDir string) (health.Sample, error)
	// ClockSynced is the kernel's view when timedatectl is missing.
	ClockSynced func() (bool, error)
	Now         func() time.Time
}

// Real is the machine doctor runs on.
func Real(configPath string) *Env {
	return &Env{
		ConfigPath: configPath,
		Resolver:   net.DefaultResolver,
		HostAddrs:  interfaceAddrs,
		Run: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, name, args...)
			cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
			return cmd.CombinedOutput()
		},
		Dial: (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		Exists: func(p string) bool {
			_, err := os.Stat(p)
			return err == nil
		},
		ReadFile:    os.ReadFile,
		Health:      health.Read,
		ClockSynced: kernelClockSynced,
		Now:         time.Now,
	}
}

func interfaceAddrs() ([]net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP)
		}
	}
	return out, nil
}

// Report is every finding of one run.
type Report struct {
	Results []Result `json:"results"`
}

// Worst is the gravest level found.
func (r Report) Worst() Level {
	w := OK
	for _, res := range r.Results {
		if res.Level > w {
			w = res.Level
		}
	}
	return w
}

// ExitCode is 0 when everything is fine and 2 when anything needs a look.
func (r Report) ExitCode() int {
	if r.Worst() >= Warn {
		return 2
	}
	return 0
}

// WriteText prints the report grouped by category.
func (r Report) WriteText(w io.Writer) {
	cat := ""
	counts := map[Level]int{}
	for _, res := range r.Results {
		counts[res.Level]++
		if res.Category != cat {
			if cat != "" {
				fmt.Fprintln(w)
			}
			cat = res.Category
			fmt.Fprintln(w, cat)
		}
		mark := map[Level]string{OK: "  ok    ", Skipped: "  --    ", Warn: "  WARN  ", Error: "  FAIL  "}[res.Level]
		fmt.Fprintf(w, "%s%s: %s\n", mark, res.Check, res.Message)
		if res.Fix != "" && res.Level >= Warn {
			fmt.Fprintf(w, "        fix: %s\n", res.Fix)
		}
	}
	fmt.Fprintf(w, "\n%d ok, %d warnings, %d errors, %d skipped\n", counts[OK], counts[Warn], counts[Error], counts[Skipped])
}

// WriteJSON prints the report as JSON with a summary.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Worst   Level    `json:"worst"`
		Exit    int      `json:"exit_code"`
		Results []Result `json:"results"`
	}{r.Worst(), r.ExitCode(), r.Results})
}

// Run runs every check. A configuration that does not load skips the
// checks that need it.
func Run(ctx context.Context, env *Env) Report {
	var rep Report
	add := func(rs ...Result) { rep.Results = append(rep.Results, rs...) }
	cfg, res := checkConfig(env)
	add(res)
	if cfg == nil {
		add(Result{Category: "Everything else", Check: "skipped", Level: Skipped, Message: "fix the configuration first"})
		return rep
	}
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		add(c(cctx, env, cfg)...)
		cancel()
	}
	return rep
}

var checks = []func(context.Context, *Env, *config.Config) []Result{
	checkDNS,
	checkCertificates,
	checkPorts,
	checkFirewall,
	checkNginx,
	checkService,
	checkDisk,
	checkMemory,
	checkClock,
	checkReboot,
	checkUpdates,
}

func checkConfig(env *Env) (*config.Config, Result) {
	r := Result{Category: "Configuration", Check: "config"}
	cfg, err := config.Load(env.ConfigPath)
	if err != nil {
		r.Level, r.Message = Error, err.Error()
		r.Fix = "edit " + env.ConfigPath + " or rerun sudo hearth setup"
		return nil, r
	}
	r.Message = env.ConfigPath + " is valid"
	return cfg, r
}

// names are the host names hearth answers for.
func names(cfg *config.Config) []string {
	if len(cfg.ACME.Names) > 0 {
		return cfg.ACME.Names
	}
	return []string{cfg.Domain, "rooms." + cfg.Domain, "share." + cfg.Domain}
}
