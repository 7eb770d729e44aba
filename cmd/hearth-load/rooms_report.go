package main

import (
	"fmt"
	"strings"
)

// roomMetric is one row of the rooms tables. Its target is either on the
// ratio hearth/Prosody ("<= 0.15") or on hearth's own value ("< 30").
type roomMetric struct {
	name, unit string
	get        func(*Result) float64
	sum        bool // the sum over the runs rather than the median
	ratio      string
	abs        string
	digits     int
}

var roomMetrics = []roomMetric{
	{name: "server CPU per delivered copy", unit: "µs", get: func(r *Result) float64 { return r.ServerCPUPerOpUs }, ratio: "<= 0.15", digits: 1},
	{name: "delivery latency p50, send to each occupant", unit: "ms", get: func(r *Result) float64 { return r.Rooms.CopyP50Ms }, digits: 2},
	{name: "delivery latency p99, send to each occupant", unit: "ms", get: func(r *Result) float64 { return r.Rooms.CopyP99Ms }, abs: "< 30", digits: 2},
	{name: "delivery latency max", unit: "ms", get: func(r *Result) float64 { return r.Rooms.CopyMaxMs }, digits: 1},
	{name: "undelivered copies (sum of runs)", get: func(r *Result) float64 { return float64(r.Rooms.Undelivered) }, sum: true, abs: "= 0"},
	{name: "newcomer join into the full room p50", unit: "ms", get: func(r *Result) float64 { return r.Rooms.JoinP50Ms }, abs: "< 50", digits: 2},
	{name: "newcomer join into the full room p99", unit: "ms", get: func(r *Result) float64 { return r.Rooms.JoinP99Ms }, abs: "< 50", digits: 2},
	{name: "server CPU per newcomer join and leave", unit: "ms", get: func(r *Result) float64 { return r.Rooms.ServerCPUPerJoinUs / 1000 }, digits: 1},
	{name: "filling the room (all joins)", unit: "s", get: func(r *Result) float64 { return r.Rooms.FillSec }, digits: 1},
	{name: "then until the clients had every presence", unit: "s", get: func(r *Result) float64 { return r.Rooms.SettleSec }, digits: 1},
	{name: "tool CPU per delivered copy", unit: "µs", get: func(r *Result) float64 { return r.ToolCPUPerOpUs }, digits: 1},
}

// writeRooms writes the rooms section when the results have its phases.
func writeRooms(b *strings.Builder, res map[string]map[string][]*Result) {
	const h, p = "hearth", "prosody"
	phases := []struct{ phase, title string }{
		{"rooms", "100-byte bodies"},
		{"rooms-omemo", "OMEMO-shaped messages"},
	}
	var sample *Result
	for _, ph := range phases {
		if r := first(res[h][ph.phase], res[p][ph.phase]); r != nil && r.Rooms != nil {
			sample = r
		}
	}
	if sample == nil {
		return
	}
	rr := sample.Rooms
	b.WriteString("\n## Rooms (group chat, XEP-0045)\n\n")
	fmt.Fprintf(b, "%d room(s) × %d occupants, each occupant its own client; %.1f messages/s in all, sent in\n"+
		"turn by the occupants of each room; every copy the room sends (to every occupant, the sender's\n"+
		"own reflection included) is timed from the send, whose time travels in the message id.\n"+
		"Undelivered = copies owed (messages × occupants) − copies received. Then newcomers join the\n"+
		"full room one at a time, timed from their join presence to their own presence (status 110)\n"+
		"and the subject, with the server's default history (20 messages in both). Rooms are archived\n"+
		"in both servers (hearth always; Prosody with mod_muc_mam on SQLite), made plaintext, open and\n"+
		"non-anonymous through the owner form by a server admin.\n\n"+
		"- **Prosody**: `bench/prosody-rooms.cfg.lua.tmpl`, the archive configuration plus\n"+
		"  `Component \"rooms.localhost\" \"muc\"` with `modules_enabled = { \"muc_mam\" }`,\n"+
		"  `muc_log_by_default = true`, `muc_log_all_rooms = true`, `muc_log_expires_after = \"6m\"`; room\n"+
		"  archives (store `muc_log`) in SQLite like the 1:1 archives. The owner form also makes the room\n"+
		"  persistent (Prosody drops a non-persistent room when its last occupant leaves).\n"+
		"- **Durability**: Prosody writes each message to SQLite (a transaction and fsync) before it\n"+
		"  broadcasts it; hearth broadcasts at once and group-commits the room archive beside the\n"+
		"  broadcast, holding the sender's stream management ack until the commit (as for 1:1\n"+
		"  messages); a newcomer's history includes messages still being written.\n"+
		"- **The tool shares the 2 cores**: every copy is a TLS record the tool decrypts and scans, so\n"+
		"  with a large room the tool's CPU per copy is close to the server's and latency includes\n"+
		"  the tool's share of the cores and any other work on the machine (load averages below).\n"+
		"- **CPU per delivered copy** = server CPU (utime+stime from /proc) from the first send until\n"+
		"  the last copy arrived (or the grace ran out), divided by the copies received.\n", rr.Rooms, rr.Occupants, rr.Rate)
	for _, ph := range phases {
		hr, pr := res[h][ph.phase], res[p][ph.phase]
		r := first(hr, pr)
		if r == nil || r.Rooms == nil {
			continue
		}
		fmt.Fprintf(b, "\n### %s (%d bytes a message as sent)\n\n", ph.title, r.Rooms.PayloadBytes)
		b.WriteString("| metric | hearth | Prosody | hearth/Prosody | target | met |\n|---|---|---|---|---|---|\n")
		for _, m := range roomMetrics {
			hv, hn := collectRooms(hr, m)
			pv, pn := collectRooms(pr, m)
			name := m.name
			if m.unit != "" {
				name += " (" + m.unit + ")"
			}
			ratio, target, met := "", "", ""
			if pv != 0 && hn > 0 && pn > 0 && !m.sum {
				ratio = fmt.Sprintf("%.2f", hv/pv)
				if hv/pv < 0.1 {
					ratio = fmt.Sprintf("%.3f", hv/pv)
				}
			}
			switch {
			case m.ratio != "":
				target = "ratio " + m.ratio
				if ratio != "" {
					met = verdict(hv/pv, m.ratio)
				}
			case m.abs != "" && hn > 0:
				target = "hearth " + m.abs
				met = absVerdict(hv, m.abs)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", name, num(hv, hn, m.digits), num(pv, pn, m.digits), ratio, target, met)
		}
		fmt.Fprintf(b, "\nRuns per cell: hearth %d, Prosody %d. 1-minute load average at the start and end of each run: %s.\n",
			len(hr), len(pr), loadText(res, ph.phase))
		writeErrors(b, res, ph.phase)
	}
}

func collectRooms(rs []*Result, m roomMetric) (float64, int) {
	var xs []float64
	var sum float64
	for _, r := range rs {
		if r.Rooms == nil {
			continue
		}
		v := m.get(r)
		xs = append(xs, v)
		sum += v
	}
	if m.sum {
		return sum, len(xs)
	}
	return median(xs), len(xs)
}

func absVerdict(v float64, target string) string {
	var lim float64
	ok := false
	switch {
	case strings.HasPrefix(target, "< "):
		fmt.Sscanf(target[2:], "%g", &lim)
		ok = v < lim
	case strings.HasPrefix(target, "= "):
		fmt.Sscanf(target[2:], "%g", &lim)
		ok = v == lim
	}
	if ok {
		return "yes"
	}
	return "**no**"
}
