package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func (o *options) user(i int) string { return o.prefix + strconv.Itoa(i%o.users+1) }

// settledMem samples the server's memory until it stops moving (two
// samples half a second apart within 0.5 %) or five seconds pass.
func settledMem(pid int) (memSample, error) {
	prev, err := readMem(pid)
	if err != nil {
		return prev, err
	}
	for range 10 {
		time.Sleep(500 * time.Millisecond)
		cur, err := readMem(pid)
		if err != nil {
			return cur, err
		}
		d := cur.RSSKiB - prev.RSSKiB
		if d < 0 {
			d = -d
		}
		prev = cur
		if float64(d) <= 0.005*float64(cur.RSSKiB) {
			break
		}
	}
	return prev, nil
}

func percentile(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := len(sorted) * p / 100
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return float64(sorted[i]) / float64(time.Millisecond)
}

// fullLogin is what every mode does to get a working session.
func fullLogin(ctx context.Context, o *options, t *target, user, resource string) (*conn, int, error) {
	c, err := t.login(ctx, user, resource)
	if err != nil {
		return nil, 0, err
	}
	soft, err := c.session(o.domain)
	if err != nil {
		c.nc.Close()
		return nil, soft, err
	}
	return c, soft, nil
}

// openSessions logs in n sessions with o.concurrency workers; session i
// uses account first+i and resource prefix+(first+i). Failed slots are nil.
func openSessions(ctx context.Context, o *options, t *target, first, n int, resource string, r *Result, errs *errLog) ([]*conn, []time.Duration) {
	conns := make([]*conn, n)
	lat := make([]time.Duration, n)
	var soft atomic.Int64
	forEach(ctx, o.concurrency, n, func(i int) {
		t0 := time.Now()
		u := o.user(first + i)
		c, s, err := fullLogin(ctx, o, t, u, resource+strconv.Itoa(first+i))
		soft.Add(int64(s))
		if err != nil {
			errs.add(fmt.Errorf("%s: %w", u, err))
			return
		}
		_ = c.nc.SetDeadline(time.Time{})
		lat[i] = time.Since(t0)
		conns[i] = c
	})
	r.SoftErrors += int(soft.Load())
	ok := lat[:0:0]
	for i, c := range conns {
		if c != nil {
			ok = append(ok, lat[i])
		}
	}
	return conns, ok
}

// forEach calls fn(i) for i in [0, n) from workers goroutines (at least
// one), each taking the next i, until all are done or ctx ends.
func forEach(ctx context.Context, workers, n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func closeAll(conns []*conn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.close()
			<-sem
		}()
	}
	wg.Wait()
}

func runIdle(ctx context.Context, o *options, t *target, r *Result) error {
	if o.pid <= 0 {
		return errors.New("idle needs --server-pid")
	}
	errs := newErrLog()
	before, err := settledMem(o.pid)
	if err != nil {
		return err
	}
	r.Before, r.Sessions = &before, o.sessions
	m, err := startMeter(o.pid)
	if err != nil {
		return err
	}
	progress := time.AfterFunc(10*time.Second, func() {
		fmt.Fprintln(os.Stderr, "hearth-load: still connecting…")
	})
	var h holder
	if o.procs > 1 {
		h, err = startChildren(ctx, o)
	} else {
		h, err = holdLocal(ctx, o, t, 0, o.sessions)
	}
	progress.Stop()
	if err != nil {
		return err
	}
	defer h.release()
	if err := m.stop(r); err != nil {
		return err
	}
	st := h.stats()
	lat := st.Lat
	r.SoftErrors += st.Soft
	for _, e := range st.Errors {
		errs.add(errors.New(e))
	}
	errs.n += st.Failures - len(st.Errors)
	r.Established = len(lat)
	r.Logins = len(lat)
	slices.Sort(lat)
	r.LoginP50Ms, r.LoginP99Ms = percentile(lat, 50), percentile(lat, 99)
	if r.ElapsedSec > 0 {
		r.LoginsPerSec = float64(r.Logins) / r.ElapsedSec
	}
	if r.Logins > 0 {
		r.ServerCPUPerOpUs = r.ServerCPUSec / float64(r.Logins) * 1e6
		r.ToolCPUPerOpUs = r.ToolCPUSec / float64(r.Logins) * 1e6
	}
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	after, err := settledMem(o.pid)
	if err != nil {
		return err
	}
	r.After = &after
	if r.Established > 0 {
		r.RSSPerSessionKiB = float64(after.RSSKiB-before.RSSKiB) / float64(r.Established)
		r.PSSPerSessionKiB = float64(after.PSSKiB-before.PSSKiB) / float64(r.Established)
		r.AnonPerSessionKiB = float64(after.AnonKiB-before.AnonKiB) / float64(r.Established)
	}
	if o.hold > 0 {
		select {
		case <-time.After(o.hold):
		case <-ctx.Done():
			return ctx.Err()
		}
		r.HoldSec = o.hold.Seconds()
		alive, errsAfter := h.check()
		r.Alive = alive
		for _, e := range errsAfter {
			errs.add(errors.New(e))
		}
	}
	r.Failures, r.Errors = errs.n, errs.samples
	return nil
}

func runLogins(ctx context.Context, o *options, t *target, r *Result) error {
	errs := newErrLog()
	// Log every account in once before measuring: it fills the tool's
	// SaltedPassword cache (as a real client's) and warms the server.
	accounts := max(1, min(o.users, o.loginUsers))
	warm, _ := openSessions(ctx, o, t, 0, accounts, "warm", r, errs)
	closeAll(warm)
	if errs.n > 0 {
		return fmt.Errorf("warm-up logins failed: %v", errs.samples)
	}
	r.SoftErrors = 0
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	m, err := startMeter(o.pid)
	if err != nil {
		return err
	}
	var next, soft atomic.Int64
	lats := make([][]time.Duration, max(1, o.concurrency))
	// Streams are closed politely (</stream:stream>, then wait for the
	// server's) off the workers' path: what a server does after a client
	// leaves, e.g. a group commit of last-activity, must cost it CPU, not
	// stall the next login.
	var closers sync.WaitGroup
	defer closers.Wait()
	var wg sync.WaitGroup
	for w := range lats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				t0 := time.Now()
				// The login itself may finish after the deadline; it
				// still counts, so give it its own timeout.
				c, s, err := fullLogin(context.Background(), o, t, o.user(i%accounts), "login"+strconv.Itoa(w))
				soft.Add(int64(s))
				if err != nil {
					errs.add(err)
					continue
				}
				lats[w] = append(lats[w], time.Since(t0))
				closers.Add(1)
				go func() {
					defer closers.Done()
					c.close()
				}()
			}
		}()
	}
	wg.Wait()
	if err := m.stop(r); err != nil {
		return err
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	r.Logins = len(all)
	r.LoginsPerSec = float64(len(all)) / r.ElapsedSec
	r.LoginP50Ms, r.LoginP99Ms = percentile(all, 50), percentile(all, 99)
	if len(all) > 0 {
		r.ServerCPUPerOpUs = r.ServerCPUSec / float64(len(all)) * 1e6
		r.ToolCPUPerOpUs = r.ToolCPUSec / float64(len(all)) * 1e6
	}
	r.SoftErrors = int(soft.Load())
	r.Failures, r.Errors = errs.n, errs.samples
	return nil
}

// direction is one sender→receiver stream of a pair with its window.
type direction struct {
	from, to *conn
	toAddr   string
	slots    chan struct{}
	sent     atomic.Int64
}

func runMessages(ctx context.Context, o *options, t *target, r *Result) error {
	errs := newErrLog()
	r.Pairs, r.Window = o.pairs, o.window
	conns, _ := openSessions(ctx, o, t, 0, 2*o.pairs, "msg", r, errs)
	defer closeAll(conns)
	for i, c := range conns {
		if c == nil {
			return fmt.Errorf("session %d failed to log in: %v", i, errs.samples)
		}
	}
	if o.mamDefault != "" {
		for _, c := range conns {
			_ = c.nc.SetDeadline(time.Now().Add(o.timeout))
			if err := c.write("<iq type='set' id='mamprefs'><prefs xmlns='urn:xmpp:mam:2' default='" + o.mamDefault + "'/></iq>"); err != nil {
				return err
			}
			if err := c.expectIQ("mamprefs"); err != nil {
				return fmt.Errorf("%s: archive preferences: %w", c.jid, err)
			}
			_ = c.nc.SetDeadline(time.Time{})
		}
	}
	base := time.Now()
	body := strings.Repeat("hearth load test message. ", o.bodyBytes/26+1)[:o.bodyBytes]
	// Each client sends on one direction and receives on the other.
	dirs := make([]*direction, 0, 2*o.pairs)
	for p := range o.pairs {
		a, b := conns[2*p], conns[2*p+1]
		dirs = append(dirs, &direction{from: a, to: b}, &direction{from: b, to: a})
	}
	inbound := make(map[*conn]*direction) // receiver -> its incoming direction
	outbound := make(map[*conn]*direction)
	for _, d := range dirs {
		d.slots = make(chan struct{}, o.window)
		d.toAddr = d.to.jid
		if o.address == "bare" {
			d.toAddr, _, _ = strings.Cut(d.to.jid, "/")
		}
		inbound[d.to] = d
		outbound[d.from] = d
	}
	var delivered, bounced atomic.Int64
	lats := make([][]time.Duration, len(conns))
	var readers sync.WaitGroup
	for i, c := range conns {
		in, out := inbound[c], outbound[c]
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				kind, raw, err := c.sc.next()
				if err != nil || kind == evClose {
					return
				}
				if string(elemName(raw)) != "message" {
					continue
				}
				if string(attr(raw, "type")) == "error" {
					bounced.Add(1)
					<-out.slots
					continue
				}
				ts, ok := parseStamp(attr(raw, "id"))
				if !ok {
					continue
				}
				lats[i] = append(lats[i], time.Since(base)-time.Duration(ts))
				delivered.Add(1)
				<-in.slots
			}
		}()
	}

	m, err := startMeter(o.pid)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	var senders sync.WaitGroup
	for _, d := range dirs {
		senders.Add(1)
		go func() {
			defer senders.Done()
			buf := make([]byte, 0, 256+len(body))
			for {
				select {
				case d.slots <- struct{}{}:
				case <-stop:
					return
				}
				buf = append(buf[:0], "<message type='chat' to='"...)
				buf = append(buf, d.toAddr...)
				buf = append(buf, "' id='m"...)
				buf = strconv.AppendInt(buf, int64(time.Since(base)), 10)
				buf = append(buf, "'><body>"...)
				buf = append(buf, body...)
				buf = append(buf, "</body></message>"...)
				if err := d.from.writeBytes(buf); err != nil {
					errs.add(err)
					return
				}
				d.sent.Add(1)
			}
		}()
	}
	select {
	case <-time.After(o.duration):
	case <-ctx.Done():
	}
	close(stop)
	senders.Wait()
	var sent int64
	for _, d := range dirs {
		sent += d.sent.Load()
	}
	deadline := time.Now().Add(o.grace)
	for delivered.Load()+bounced.Load() < sent && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := m.stop(r); err != nil {
		return err
	}
	r.Sent, r.Delivered, r.Bounced = sent, delivered.Load(), bounced.Load()
	r.Undelivered = r.Sent - r.Delivered
	r.MsgsPerSec = float64(r.Delivered) / r.ElapsedSec
	// Stop the readers before touching their latency slices.
	for _, c := range conns {
		_ = c.nc.SetReadDeadline(time.Now())
	}
	readers.Wait()
	all := slices.Concat(lats...)
	slices.Sort(all)
	r.MsgP50Ms, r.MsgP99Ms = percentile(all, 50), percentile(all, 99)
	if r.Delivered > 0 {
		r.ServerCPUPerOpUs = r.ServerCPUSec / float64(r.Delivered) * 1e6
		r.ToolCPUPerOpUs = r.ToolCPUSec / float64(r.Delivered) * 1e6
	}
	for _, c := range conns {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	if o.archiveCount {
		// After the CPU window: the queries are not part of the load.
		for _, c := range conns {
			n, err := queryArchiveCount(c, o.timeout)
			if err != nil {
				errs.add(fmt.Errorf("%s: %w", c.jid, err))
				continue
			}
			r.Archived += n
		}
	}
	r.Failures, r.Errors = errs.n, errs.samples
	return nil
}

// parseStamp reads the send time from an id of the form m<nanoseconds>.
func parseStamp(id []byte) (int64, bool) {
	if len(id) < 2 || id[0] != 'm' {
		return 0, false
	}
	var v int64
	for _, c := range id[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}
