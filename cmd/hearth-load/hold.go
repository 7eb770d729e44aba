package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// holder keeps idle sessions open, locally or in child processes (one
// process cannot hold more sockets than its RLIMIT_NOFILE, and without
// CAP_SYS_RESOURCE the hard limit cannot be raised).
type holder interface {
	stats() holdStats
	check() (alive int, errs []string) // ping every session
	release()
}

// holdStats is what a holder reports once its sessions are open; it is
// also the line a child process prints.
type holdStats struct {
	Lat      []time.Duration `json:"lat"`
	Soft     int             `json:"soft"`
	Failures int             `json:"failures"`
	Errors   []string        `json:"errors,omitempty"`
}

type checkResult struct {
	Alive  int      `json:"alive"`
	Errors []string `json:"errors,omitempty"`
}

type localHolder struct {
	o     *options
	conns []*conn
	st    holdStats
}

func holdLocal(ctx context.Context, o *options, t *target, first, n int) (*localHolder, error) {
	errs := newErrLog()
	var r Result
	conns, lat := openSessions(ctx, o, t, first, n, "idle", &r, errs)
	return &localHolder{o: o, conns: conns, st: holdStats{Lat: lat, Soft: r.SoftErrors, Failures: errs.n, Errors: errs.samples}}, ctx.Err()
}

func (h *localHolder) stats() holdStats { return h.st }
func (h *localHolder) release()         { closeAll(h.conns) }

func (h *localHolder) check() (int, []string) {
	errs := newErrLog()
	var alive atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i, c := range h.conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.ping(h.o.domain, i, 30*time.Second); err != nil {
				errs.add(fmt.Errorf("after hold: %w", err))
				return
			}
			alive.Add(1)
		}()
	}
	wg.Wait()
	return int(alive.Load()), errs.samples
}

// runChild is the child side: open this process's share of the sessions,
// report, ping them all when told ("check"), close them at EOF on stdin.
func runChild(ctx context.Context, o *options, t *target) error {
	per := (o.sessions + o.procs - 1) / o.procs
	first := o.child * per
	n := min(per, o.sessions-first)
	h, err := holdLocal(ctx, o, t, first, max(n, 0))
	if err != nil {
		return err
	}
	defer h.release()
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(h.stats()); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "check" {
			alive, errs := h.check()
			if err := enc.Encode(checkResult{Alive: alive, Errors: errs}); err != nil {
				return err
			}
		}
	}
	return nil
}

type childHolder struct {
	cmds []*exec.Cmd
	ins  []io.WriteCloser
	outs []*json.Decoder
	st   holdStats
}

// startChildren re-executes the tool o.procs times, each holding a share.
func startChildren(ctx context.Context, o *options) (*childHolder, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	h := &childHolder{}
	for i := range o.procs {
		args := append(append([]string(nil), os.Args[1:]...), "--child", strconv.Itoa(i))
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			h.release()
			return nil, fmt.Errorf("starting child %d: %w", i, err)
		}
		h.cmds, h.ins, h.outs = append(h.cmds, cmd), append(h.ins, in), append(h.outs, json.NewDecoder(out))
	}
	for i, dec := range h.outs {
		var st holdStats
		if err := dec.Decode(&st); err != nil {
			h.release()
			return nil, fmt.Errorf("child %d: %w", i, err)
		}
		h.st.Lat = append(h.st.Lat, st.Lat...)
		h.st.Soft += st.Soft
		h.st.Failures += st.Failures
		h.st.Errors = append(h.st.Errors, st.Errors...)
	}
	return h, nil
}

func (h *childHolder) stats() holdStats { return h.st }

func (h *childHolder) check() (int, []string) {
	alive := 0
	var errs []string
	for i, in := range h.ins {
		if _, err := io.WriteString(in, "check\n"); err != nil {
			errs = append(errs, fmt.Sprintf("child %d: %v", i, err))
			continue
		}
		var cr checkResult
		if err := h.outs[i].Decode(&cr); err != nil {
			errs = append(errs, fmt.Sprintf("child %d: %v", i, err))
			continue
		}
		alive += cr.Alive
		errs = append(errs, cr.Errors...)
	}
	return alive, errs
}

func (h *childHolder) release() {
	for _, in := range h.ins {
		in.Close()
	}
	for _, c := range h.cmds {
		_ = c.Wait()
	}
}
