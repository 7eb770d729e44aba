// Command hearth-load is an independent XMPP load client for comparing
// hearth with other servers (Prosody, ejabberd) on the same machine. It
// speaks the client protocol itself (a hand-written stream splitter, SCRAM,
// TLS) so that it stays cheap next to the server it measures, and it
// reports the server's CPU and memory from /proc alongside its own CPU so
// that cost per login and per message can be compared even when the tool
// shares, or saturates, the cores.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	host, domain, prefix, password, tlsMode, mode, mech, label, address string
	port, pid, sessions, concurrency, pairs, window, users, sources     int
	bodyBytes, iterations, procs, child, loginUsers                     int
	resumes, unacked                                                    int
	duration, settle, hold, grace, timeout, dropWait                    time.Duration
	jsonOut, archiveCount                                               bool
	out, results, mamDefault                                            string
	room                                                                roomOptions
}

func main() {
	var o options
	fs := flag.NewFlagSet("hearth-load", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `hearth-load: measure an XMPP server under load.

Modes:
  rss       resting RSS/PSS of --server-pid
  idle      RSS per idle authenticated session: opens --sessions sessions
            (login, roster, presence, ping), lets the server settle and
            reports (RSS after - RSS before) / sessions; --hold keeps them
            open longer and then pings every one to prove it is alive
  logins    full logins per second (TCP, TLS, SASL, bind, roster,
            presence, ping, close) with --concurrency workers for --duration
  messages  1:1 messages per second between --pairs pairs of clients, both
            directions, at most --window in flight per direction;
            --archive-count then asks every client's archive (XEP-0313)
            how many messages it holds
  resume    stream management resumption (XEP-0198): a receiver gets
            --unacked messages without acking, its TCP connection is reset,
            a new connection authenticates and sends <resume/>; times to
            <resumed/> and to the last redelivered message, --resumes times
  rooms     group chat (XEP-0045): --rooms rooms × --occupants clients,
            messages at --rate per second in all, each copy timed at every
            occupant, undelivered copies counted; then --joins newcomers
            timed into the full rooms (see rooms.go)
  report    write docs/benchmarks.md from a bench-peers results directory
  prosody-accounts
            write Prosody account files (internal_hashed, SCRAM-SHA-1) for
            --users accounts into --out (the host's accounts directory)

Accounts are PREFIX1 … PREFIXn (--user-prefix, --users), all with --password.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.host, "host", "127.0.0.1", "server address")
	fs.IntVar(&o.port, "port", 5222, "server port")
	fs.StringVar(&o.domain, "domain", "localhost", "XMPP domain")
	fs.StringVar(&o.prefix, "user-prefix", "load", "account localpart prefix")
	fs.IntVar(&o.users, "users", 2000, "number of accounts PREFIX1..PREFIXn available")
	fs.StringVar(&o.password, "password", "load-password", "password of every account")
	fs.StringVar(&o.tlsMode, "tls", "starttls", "starttls or direct")
	fs.IntVar(&o.pid, "server-pid", 0, "PID of the server process (for RSS and CPU)")
	fs.StringVar(&o.mode, "mode", "rss", "rss, idle, logins, messages, resume, rooms, report or prosody-accounts")
	fs.IntVar(&o.sessions, "sessions", 1000, "idle: sessions to open")
	fs.IntVar(&o.concurrency, "concurrency", 16, "logins: parallel workers; idle/messages: parallel logins while connecting")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "logins/messages: how long to load")
	fs.IntVar(&o.pairs, "pairs", 50, "messages: pairs of clients")
	fs.IntVar(&o.window, "window", 8, "messages: bounded in-flight messages per direction of a pair")
	fs.StringVar(&o.mech, "mech", "SCRAM-SHA-1", "SASL mechanism: SCRAM-SHA-1, SCRAM-SHA-256 or PLAIN")
	fs.StringVar(&o.label, "label", "", "name of the server, copied into the output")
	fs.StringVar(&o.address, "address", "full", "messages: address the peer's full or bare JID")
	fs.IntVar(&o.bodyBytes, "body-bytes", 100, "messages: body length")
	fs.IntVar(&o.sources, "sources", 0, "spread connections over 127.0.0.1..127.0.0.N (0: one per 10,000 connections)")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "idle: wait before measuring memory")
	fs.DurationVar(&o.hold, "hold", 0, "idle: keep the sessions this long, then ping each")
	fs.DurationVar(&o.grace, "grace", 5*time.Second, "messages: how long to wait for in-flight messages after the run")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-login timeout")
	fs.IntVar(&o.procs, "procs", 1, "idle: hold the sessions in this many child processes (each is bound by RLIMIT_NOFILE)")
	fs.IntVar(&o.child, "child", -1, "internal: run as child process number N of --procs")
	fs.IntVar(&o.loginUsers, "login-users", 100, "logins: rotate over this many accounts (each logged in once before measuring)")
	fs.StringVar(&o.mamDefault, "mam-default", "", "messages: first set every client's archiving default (XEP-0313 prefs: always, roster or never)")
	fs.BoolVar(&o.archiveCount, "archive-count", false, "messages: afterwards, count the messages in every client's archive (XEP-0313 with RSM)")
	fs.IntVar(&o.resumes, "resumes", 100, "resume: how many resumptions to time")
	fs.IntVar(&o.unacked, "unacked", 10, "resume: messages left unacked before the connection dies")
	fs.DurationVar(&o.dropWait, "drop-wait", 100*time.Millisecond, "resume: pause between the reset and the new connection")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON")
	fs.StringVar(&o.out, "out", "", "prosody-accounts: directory to write; report: markdown file to write")
	fs.StringVar(&o.results, "results", "", "report: directory of JSON results (SERVER.PHASE.REP.json)")
	fs.IntVar(&o.iterations, "iterations", 10000, "prosody-accounts: SCRAM iteration count")
	o.room.register(fs)
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, &o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hearth-load:", err)
		os.Exit(1)
	}
	if res == nil {
		return
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return
	}
	res.print(os.Stdout)
}

func run(ctx context.Context, o *options) (*Result, error) {
	switch o.mode {
	case "prosody-accounts":
		return nil, writeProsodyAccounts(o)
	case "report":
		return nil, writeReport(o)
	}
	t := &target{
		addr:     net.JoinHostPort(o.host, strconv.Itoa(o.port)),
		domain:   o.domain,
		direct:   o.tlsMode == "direct",
		mech:     o.mech,
		password: o.password,
		timeout:  o.timeout,
		cache:    newSaltCache(),
		tls: &tls.Config{
			// Benchmarks run against self-signed certificates on loopback.
			InsecureSkipVerify: true, //nolint:gosec
			ServerName:         o.domain,
			MinVersion:         tls.VersionTLS12,
			// The same key exchange with every server: Go would offer the
			// post-quantum hybrid first, which only Go servers accept and
			// which costs both sides more than X25519.
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
		},
	}
	switch o.tlsMode {
	case "starttls":
	case "direct":
		t.tls.NextProtos = []string{"xmpp-client"}
	default:
		return nil, fmt.Errorf("--tls must be starttls or direct, not %q", o.tlsMode)
	}
	switch o.mech {
	case "SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN":
	default:
		return nil, fmt.Errorf("--mech must be SCRAM-SHA-1, SCRAM-SHA-256 or PLAIN")
	}
	if o.users < 1 {
		return nil, errors.New("--users must be at least 1")
	}
	conns := o.concurrency
	switch o.mode {
	case "idle":
		conns = o.sessions / max(1, o.procs)
	case "messages":
		conns = 2 * o.pairs
	case "rooms":
		conns = o.room.rooms*o.room.occupants + max(10, o.room.rooms) + 1
	}
	if _, err := raiseNoFile(uint64(conns) + 1024); err != nil {
		return nil, fmt.Errorf("raising the descriptor limit: %w", err)
	}
	n := o.sources
	if n == 0 {
		n = conns/10000 + 1
		if o.mode == "logins" {
			// Thousands of short connections a second leave TIME_WAIT
			// sockets behind; spread them over more local ports.
			n = 4
		}
	}
	if ip := net.ParseIP(o.host); ip != nil && ip.IsLoopback() && ip.To4() != nil && n > 1 {
		for i := 1; i <= n && i < 255; i++ {
			t.sources = append(t.sources, net.IPv4(127, 0, 0, byte(i)))
		}
	}
	if o.child >= 0 {
		return nil, runChild(ctx, o, t)
	}
	r := &Result{Label: o.label, Mode: o.mode, Addr: t.addr, TLS: o.tlsMode, Mech: o.mech, ServerPID: o.pid}
	var err error
	switch o.mode {
	case "rss":
		if o.pid <= 0 {
			return nil, errors.New("rss needs --server-pid")
		}
		var m memSample
		m, err = readMem(o.pid)
		r.Resting = &m
	case "idle":
		err = runIdle(ctx, o, t, r)
	case "logins":
		err = runLogins(ctx, o, t, r)
	case "messages":
		err = runMessages(ctx, o, t, r)
	case "resume":
		err = runResume(ctx, o, t, r)
	case "rooms":
		if o.room.service == "" {
			o.room.service = "rooms." + o.domain
		}
		err = runRooms(ctx, o, t, r)
	default:
		return nil, fmt.Errorf("unknown --mode %q", o.mode)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Result is one run's measurements; zero fields do not apply to the mode.
type Result struct {
	Label     string `json:"label,omitempty"`
	Mode      string `json:"mode"`
	Addr      string `json:"addr"`
	TLS       string `json:"tls"`
	Mech      string `json:"mech"`
	ServerPID int    `json:"server_pid,omitempty"`

	Resting           *memSample `json:"resting,omitempty"`
	Before            *memSample `json:"before,omitempty"`
	After             *memSample `json:"after,omitempty"`
	Sessions          int        `json:"sessions,omitempty"`
	Established       int        `json:"established,omitempty"`
	Alive             int        `json:"alive,omitempty"`
	HoldSec           float64    `json:"hold_sec,omitempty"`
	RSSPerSessionKiB  float64    `json:"rss_per_session_kib,omitempty"`
	PSSPerSessionKiB  float64    `json:"pss_per_session_kib,omitempty"`
	AnonPerSessionKiB float64    `json:"anon_per_session_kib,omitempty"`

	Logins       int     `json:"logins,omitempty"`
	LoginsPerSec float64 `json:"logins_per_sec,omitempty"`
	LoginP50Ms   float64 `json:"login_p50_ms,omitempty"`
	LoginP99Ms   float64 `json:"login_p99_ms,omitempty"`

	Pairs       int     `json:"pairs,omitempty"`
	Window      int     `json:"window,omitempty"`
	Sent        int64   `json:"sent,omitempty"`
	Delivered   int64   `json:"delivered,omitempty"`
	Undelivered int64   `json:"undelivered"`
	Bounced     int64   `json:"bounced,omitempty"`
	MsgsPerSec  float64 `json:"msgs_per_sec,omitempty"`
	MsgP50Ms    float64 `json:"msg_p50_ms,omitempty"`
	MsgP99Ms    float64 `json:"msg_p99_ms,omitempty"`
	// Archived is the sum over the clients of the messages their archives
	// hold after the run: 2 per delivered message when both sides archive.
	Archived int64 `json:"archived,omitempty"`

	Resumes          int     `json:"resumes,omitempty"`
	Unacked          int     `json:"unacked,omitempty"`
	ResumedP50Ms     float64 `json:"resumed_p50_ms,omitempty"`
	ResumedP99Ms     float64 `json:"resumed_p99_ms,omitempty"`
	RedeliveredP50Ms float64 `json:"redelivered_p50_ms,omitempty"`
	RedeliveredP99Ms float64 `json:"redelivered_p99_ms,omitempty"`

	Rooms *RoomResult `json:"rooms,omitempty"`

	Failures   int      `json:"failures"`
	SoftErrors int      `json:"iq_errors"`
	Errors     []string `json:"errors,omitempty"`

	// LoadAvg is the machine's 1-minute load average when the measured
	// part started and when it ended.
	LoadAvg          [2]float64 `json:"loadavg"`
	ElapsedSec       float64    `json:"elapsed_sec,omitempty"`
	ServerCPUSec     float64    `json:"server_cpu_sec,omitempty"`
	ToolCPUSec       float64    `json:"tool_cpu_sec,omitempty"`
	ServerCPUPerOpUs float64    `json:"server_cpu_per_op_us,omitempty"`
	ToolCPUPerOpUs   float64    `json:"tool_cpu_per_op_us,omitempty"`
}

func (r *Result) print(w io.Writer) {
	row := func(k string, v any) { fmt.Fprintf(w, "%-26s %v\n", k, v) }
	name := r.Label
	if name == "" {
		name = r.Addr
	}
	row("server", fmt.Sprintf("%s (%s, %s, %s)", name, r.Addr, r.TLS, r.Mech))
	row("mode", r.Mode)
	mem := func(k string, m *memSample) {
		if m != nil {
			row(k, fmt.Sprintf("RSS %.1f MiB, PSS %.1f MiB, anonymous %.1f MiB", float64(m.RSSKiB)/1024, float64(m.PSSKiB)/1024, float64(m.AnonKiB)/1024))
		}
	}
	mem("resting", r.Resting)
	mem("before", r.Before)
	mem("after", r.After)
	if r.Mode == "idle" {
		row("sessions", fmt.Sprintf("%d requested, %d established", r.Sessions, r.Established))
		if r.Alive > 0 {
			row("alive after hold", r.Alive)
		}
		row("RSS per session", fmt.Sprintf("%.1f KiB (PSS %.1f KiB, anonymous %.1f KiB)", r.RSSPerSessionKiB, r.PSSPerSessionKiB, r.AnonPerSessionKiB))
	}
	if r.Mode == "logins" || r.Mode == "idle" {
		row("logins", r.Logins)
		row("logins/s", fmt.Sprintf("%.1f", r.LoginsPerSec))
		row("login latency p50/p99", fmt.Sprintf("%.1f ms / %.1f ms", r.LoginP50Ms, r.LoginP99Ms))
	}
	if r.Mode == "messages" {
		row("pairs × window", fmt.Sprintf("%d × %d (both directions)", r.Pairs, r.Window))
		row("sent/delivered", fmt.Sprintf("%d / %d", r.Sent, r.Delivered))
		row("undelivered (bounced)", fmt.Sprintf("%d (%d)", r.Undelivered, r.Bounced))
		row("messages/s", fmt.Sprintf("%.0f", r.MsgsPerSec))
		row("delivery p50/p99", fmt.Sprintf("%.2f ms / %.2f ms", r.MsgP50Ms, r.MsgP99Ms))
		if r.Archived > 0 {
			row("archived (all clients)", fmt.Sprintf("%d (%.2f per delivered message)", r.Archived, float64(r.Archived)/float64(max(1, r.Delivered))))
		}
	}
	if r.Mode == "resume" {
		row("resumptions", fmt.Sprintf("%d, %d unacked messages each", r.Resumes, r.Unacked))
		row("to <resumed/> p50/p99", fmt.Sprintf("%.2f ms / %.2f ms", r.ResumedP50Ms, r.ResumedP99Ms))
		row("to all redelivered p50/p99", fmt.Sprintf("%.2f ms / %.2f ms", r.RedeliveredP50Ms, r.RedeliveredP99Ms))
	}
	if r.Rooms != nil {
		r.Rooms.print(row)
	}
	if r.Mode != "rss" {
		row("load average (1 min)", fmt.Sprintf("%.2f at the start, %.2f at the end", r.LoadAvg[0], r.LoadAvg[1]))
		row("failures / iq errors", fmt.Sprintf("%d / %d", r.Failures, r.SoftErrors))
		row("elapsed", fmt.Sprintf("%.1f s", r.ElapsedSec))
		row("server CPU", fmt.Sprintf("%.2f s", r.ServerCPUSec))
		row("tool CPU", fmt.Sprintf("%.2f s", r.ToolCPUSec))
		if r.ServerCPUPerOpUs > 0 {
			op := "login"
			if r.Mode == "messages" {
				op = "message"
			}
			if r.Mode == "rooms" {
				op = "delivered copy"
			}
			row("server CPU per "+op, fmt.Sprintf("%.0f µs", r.ServerCPUPerOpUs))
			row("tool CPU per "+op, fmt.Sprintf("%.0f µs", r.ToolCPUPerOpUs))
		}
	}
	for _, e := range r.Errors {
		row("error", e)
	}
}

// errLog counts failures and keeps a few distinct samples.
type errLog struct {
	mu      sync.Mutex
	n       int
	samples []string
}

func newErrLog() *errLog { return &errLog{} }

func (e *errLog) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if len(e.samples) < 5 && !contains(e.samples, s) {
		e.samples = append(e.samples, s)
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
