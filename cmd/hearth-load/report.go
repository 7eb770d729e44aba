package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The report mode turns the JSON results of a bench-peers run
// (DIR/<server>.<phase>.<rep>.json) into the markdown of
// docs/benchmarks.md: medians per server, ratios hearth/peer against the
// targets, and the commands that produced them (DIR/commands.txt).

type metric struct {
	name   string
	unit   string
	phase  string
	get    func(*Result) float64
	target string // "<= 0.65" or ">= 2", on the ratio hearth/peer
	digits int
}

var metrics = []metric{
	{"resting RSS", "MiB", "idle", func(r *Result) float64 { return mib(r.Before) }, "<= 0.65", 1},
	{"resting PSS", "MiB", "idle", func(r *Result) float64 { return inMiB(r.Before, func(m *memSample) int64 { return m.PSSKiB }) }, "", 1},
	{"resting anonymous RSS", "MiB", "idle", func(r *Result) float64 { return inMiB(r.Before, func(m *memSample) int64 { return m.AnonKiB }) }, "", 1},
	{"peak RSS before the load (VmHWM)", "MiB", "idle", func(r *Result) float64 { return inMiB(r.Before, func(m *memSample) int64 { return m.PeakKiB }) }, "", 1},
	{"RSS per idle session", "KiB", "idle", func(r *Result) float64 { return r.RSSPerSessionKiB }, "<= 0.35", 1},
	{"anonymous RSS per idle session", "KiB", "idle", func(r *Result) float64 { return r.AnonPerSessionKiB }, "", 1},
	{"logins/s", "", "logins", func(r *Result) float64 { return r.LoginsPerSec }, ">= 2", 0},
	{"login latency p50", "ms", "logins", func(r *Result) float64 { return r.LoginP50Ms }, "", 1},
	{"login latency p99", "ms", "logins", func(r *Result) float64 { return r.LoginP99Ms }, "", 1},
	{"server CPU per login", "ms", "logins", func(r *Result) float64 { return r.ServerCPUPerOpUs / 1000 }, "<= 0.33", 2},
	{"tool CPU per login", "ms", "logins", func(r *Result) float64 { return r.ToolCPUPerOpUs / 1000 }, "", 2},
	{"messages/s", "", "messages", func(r *Result) float64 { return r.MsgsPerSec }, ">= 1.5", 0},
	{"delivery latency p50", "ms", "messages", func(r *Result) float64 { return r.MsgP50Ms }, "", 2},
	{"delivery latency p99", "ms", "messages", func(r *Result) float64 { return r.MsgP99Ms }, "", 2},
	{"server CPU per message", "µs", "messages", func(r *Result) float64 { return r.ServerCPUPerOpUs }, "<= 0.33", 1},
	{"tool CPU per message", "µs", "messages", func(r *Result) float64 { return r.ToolCPUPerOpUs }, "", 1},
	{"undelivered messages (sum of runs)", "", "messages", nil, "", 0},
}

// archiveMetrics are the same messages with archiving on in both servers
// (phase messages-mam); the targets are the issue's: ten times the
// throughput, or a tenth of the CPU per archived message when the tool
// saturates the cores first.
var archiveMetrics = []metric{
	{"messages/s", "", "messages-mam", func(r *Result) float64 { return r.MsgsPerSec }, ">= 10", 0},
	{"delivery latency p50", "ms", "messages-mam", func(r *Result) float64 { return r.MsgP50Ms }, "", 2},
	{"delivery latency p99", "ms", "messages-mam", func(r *Result) float64 { return r.MsgP99Ms }, "", 2},
	{"server CPU per message, archived for both sides", "µs", "messages-mam", func(r *Result) float64 { return r.ServerCPUPerOpUs }, "<= 0.1", 1},
	{"server CPU per archived record", "µs", "messages-mam", func(r *Result) float64 {
		if r.Archived == 0 {
			return 0
		}
		return r.ServerCPUSec / float64(r.Archived) * 1e6
	}, "", 1},
	{"tool CPU per message", "µs", "messages-mam", func(r *Result) float64 { return r.ToolCPUPerOpUs }, "", 1},
	{"archived records per delivered message", "", "messages-mam", func(r *Result) float64 {
		return float64(r.Archived) / float64(max(1, r.Delivered))
	}, "", 2},
	{"undelivered messages (sum of runs)", "", "messages-mam", nil, "", 0},
}

// resumeMetrics time stream management resumption (phase resume).
var resumeMetrics = []metric{
	{"`<resume/>` to `<resumed/>` p50", "ms", "resume", func(r *Result) float64 { return r.ResumedP50Ms }, "", 2},
	{"`<resume/>` to `<resumed/>` p99", "ms", "resume", func(r *Result) float64 { return r.ResumedP99Ms }, "", 2},
	{"`<resume/>` to the last unacked message redelivered p50", "ms", "resume", func(r *Result) float64 { return r.RedeliveredP50Ms }, "", 2},
	{"`<resume/>` to the last unacked message redelivered p99", "ms", "resume", func(r *Result) float64 { return r.RedeliveredP99Ms }, "", 2},
	{"resumptions timed per run", "", "resume", func(r *Result) float64 { return float64(r.Resumes) }, "", 0},
	{"failed resumptions (sum of runs)", "", "resume", nil, "", 0},
}

// mib is a sample's RSS in MiB (0 without a sample).
func mib(m *memSample) float64 {
	return inMiB(m, func(m *memSample) int64 { return m.RSSKiB })
}

// inMiB is one of a sample's KiB figures in MiB (0 without a sample).
func inMiB(m *memSample, kib func(*memSample) int64) float64 {
	if m == nil {
		return 0
	}
	return float64(kib(m)) / 1024
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func loadResults(dir string) (map[string]map[string][]*Result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string][]*Result) // server -> phase -> runs
	for _, f := range files {
		parts := strings.Split(filepath.Base(f), ".")
		if len(parts) != 4 {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		r := new(Result)
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if out[parts[0]] == nil {
			out[parts[0]] = make(map[string][]*Result)
		}
		out[parts[0]][parts[1]] = append(out[parts[0]][parts[1]], r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no results in %s", dir)
	}
	return out, nil
}

func writeReport(o *options) error {
	if o.out == "" || o.results == "" {
		return errors.New("report needs --results DIR and --out FILE")
	}
	res, err := loadResults(o.results)
	if err != nil {
		return err
	}
	const h, p = "hearth", "prosody"
	var b strings.Builder
	b.WriteString("# Benchmarks: hearth and its peers\n\n")
	b.WriteString("Written by `make bench-peers` (bench/peers.sh): the same independent load tool\n" +
		"(`cmd/hearth-load`) runs the same load against hearth and Prosody on this machine, each phase\n" +
		"on a freshly started server with the same accounts, medians of the runs. The tool shares the\n" +
		"cores with the server, so costs are given as server CPU seconds (from /proc) per operation.\n\n")
	if env, err := os.ReadFile(filepath.Join(o.results, "env.txt")); err == nil {
		b.WriteString("## Machine and setup\n\n```\n" + strings.TrimSpace(string(env)) + "\n```\n\n")
	}
	b.WriteString("## Results\n\n")
	writeTable(&b, res, metrics)
	fmt.Fprintf(&b, "\nRuns per cell: hearth %s, Prosody %s (idle/logins/messages).\n", runs(res[h]), runs(res[p]))
	fmt.Fprintf(&b, "1-minute load average at the start and end of each run: %s.\n", loadText(res, "idle", "logins", "messages"))
	if len(res[h]["messages-mam"])+len(res[p]["messages-mam"]) > 0 {
		b.WriteString("\n## With message archiving on in both servers\n\n")
		b.WriteString("The messages load again, on fresh servers, with every 1:1 message archived for both\n" +
			"sides: hearth's archive (bbolt, group commit), Prosody's mod_mam on SQLite. Afterwards each\n" +
			"client asks its own archive for its size (XEP-0313 with an RSM count): a server that kept\n" +
			"every message holds 2 records per delivered message.\n\n")
		writeTable(&b, res, archiveMetrics)
		fmt.Fprintf(&b, "\nRuns per cell: hearth %d, Prosody %d. 1-minute load average at the start and end of each run: %s.\n",
			len(res[h]["messages-mam"]), len(res[p]["messages-mam"]), loadText(res, "messages-mam"))
		writeErrors(&b, res, "messages-mam")
	}
	if len(res[h]["resume"])+len(res[p]["resume"]) > 0 {
		b.WriteString("\n## Stream management resumption (XEP-0198)\n\n")
		b.WriteString("A receiver enables resumption, gets unacked messages, its TCP connection is reset; a new\n" +
			"connection authenticates (not timed) and sends `<resume/>`. Timed to `<resumed/>` and to the\n" +
			"last of the unacked messages delivered again. Servers as in the archive phase.\n\n")
		writeTable(&b, res, resumeMetrics)
		if r := first(res[h]["resume"], res[p]["resume"]); r != nil {
			fmt.Fprintf(&b, "\n%d unacked messages per resumption. Runs per cell: hearth %d, Prosody %d. 1-minute load average at the start and end of each run: %s.\n",
				r.Unacked, len(res[h]["resume"]), len(res[p]["resume"]), loadText(res, "resume"))
		}
		writeErrors(&b, res, "resume")
	}
	writeRooms(&b, res)
	if holds := res[h]["hold"]; len(holds) > 0 {
		r := holds[len(holds)-1]
		b.WriteString("\n## Many idle sessions (hearth)\n\n")
		fmt.Fprintf(&b, "| sessions requested | established | alive after %s hold (each answered a ping) | server RSS before | server RSS with the sessions | per session | failures |\n|---|---|---|---|---|---|---|\n", holdText(r))
		fmt.Fprintf(&b, "| %d | %d | %d | %.1f MiB | %.1f MiB | %.1f KiB | %d |\n", r.Sessions, r.Established, r.Alive, mib(r.Before), mib(r.After), r.RSSPerSessionKiB, r.Failures)
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "\n- error: `%s`", e)
		}
		b.WriteString("\n")
	}
	if notes, err := os.ReadFile(filepath.Join(o.results, "notes.md")); err == nil {
		b.WriteString("\n" + strings.TrimSpace(string(notes)) + "\n")
	}
	if cmds, err := os.ReadFile(filepath.Join(o.results, "commands.txt")); err == nil {
		b.WriteString("\n## Exact commands of this run\n\n```sh\n" + strings.TrimSpace(string(cmds)) + "\n```\n")
	}
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}

// writeTable writes one hearth/Prosody table of medians with ratios and
// verdicts against the targets.
func writeTable(b *strings.Builder, res map[string]map[string][]*Result, ms []metric) {
	const h, p = "hearth", "prosody"
	fmt.Fprintf(b, "| metric | hearth | Prosody | hearth/Prosody | target | met |\n|---|---|---|---|---|---|\n")
	for _, m := range ms {
		hv, hn := collect(res[h][m.phase], m)
		pv, pn := collect(res[p][m.phase], m)
		if hn == 0 && pn == 0 {
			continue
		}
		name := m.name
		if m.unit != "" {
			name += " (" + m.unit + ")"
		}
		ratio, met := "", ""
		if m.get != nil && pv != 0 && hn > 0 && pn > 0 {
			q := hv / pv
			ratio = fmt.Sprintf("%.2f", q)
			if q < 0.1 {
				ratio = fmt.Sprintf("%.3f", q) // 0.01 would hide a factor of ten
			}
			met = verdict(q, m.target)
		}
		if m.get == nil {
			met = "yes"
			if hv != 0 {
				met = "**no**"
			}
			ratio = "—"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", name, num(hv, hn, m.digits), num(pv, pn, m.digits), ratio, m.target, met)
	}
}

// writeErrors lists the distinct error samples of a phase's runs.
func writeErrors(b *strings.Builder, res map[string]map[string][]*Result, phase string) {
	for _, server := range []string{"hearth", "prosody"} {
		var seen []string
		for _, r := range res[server][phase] {
			for _, e := range r.Errors {
				if !contains(seen, e) {
					seen = append(seen, e)
					fmt.Fprintf(b, "\n- %s error: `%s`", server, e)
				}
			}
		}
		if len(seen) > 0 {
			b.WriteString("\n")
		}
	}
}

// loadText lists each server's runs of the phases as "start→end" load
// averages.
func loadText(res map[string]map[string][]*Result, phases ...string) string {
	var parts []string
	for _, server := range []string{"hearth", "prosody"} {
		var each []string
		for _, ph := range phases {
			for _, r := range res[server][ph] {
				each = append(each, fmt.Sprintf("%.1f→%.1f", r.LoadAvg[0], r.LoadAvg[1]))
			}
		}
		if len(each) > 0 {
			name := "hearth"
			if server == "prosody" {
				name = "Prosody"
			}
			parts = append(parts, name+" "+strings.Join(each, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

func first(lists ...[]*Result) *Result {
	for _, l := range lists {
		if len(l) > 0 {
			return l[0]
		}
	}
	return nil
}

func holdText(r *Result) string {
	if r.HoldSec > 0 {
		return fmt.Sprintf("a %.0f s", r.HoldSec)
	}
	return "the"
}

func runs(m map[string][]*Result) string {
	return fmt.Sprintf("%d/%d/%d", len(m["idle"]), len(m["logins"]), len(m["messages"]))
}

// collect returns the median of the metric over runs (for undelivered
// messages: the sum) and how many runs there were.
func collect(rs []*Result, m metric) (float64, int) {
	if m.get == nil {
		var sum float64
		for _, r := range rs {
			if m.phase == "resume" {
				sum += float64(r.Failures)
			} else {
				sum += float64(r.Undelivered)
			}
		}
		return sum, len(rs)
	}
	var xs []float64
	for _, r := range rs {
		xs = append(xs, m.get(r))
	}
	return median(xs), len(xs)
}

func num(v float64, n, digits int) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.*f", digits, v)
}

func verdict(q float64, target string) string {
	var lim float64
	switch {
	case strings.HasPrefix(target, "<= "):
		fmt.Sscanf(target[3:], "%g", &lim)
		if q <= lim {
			return "yes"
		}
		return "**no**"
	case strings.HasPrefix(target, ">= "):
		fmt.Sscanf(target[3:], "%g", &lim)
		if q >= lim {
			return "yes"
		}
		return "**no**"
	}
	return ""
}
