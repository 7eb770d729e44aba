// Package supervisor runs hearth's components (the XMPP server, the admin
// socket, later the portal and retention jobs) as goroutine services in one
// process: it restarts a failed component with exponential backoff, stops
// everything when its context ends and tells systemd how things stand.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// Service is one long-running component. Run blocks until ctx ends (return
// nil) or the component fails (return the error). Returning before ctx ends
// counts as a failure even with a nil error: a component is never expected
// to stop on its own.
type Service struct {
	Name string
	Run  func(ctx context.Context) error
}

// Supervisor restarts failed services. The zero value is usable with the
// defaults below.
type Supervisor struct {
	Log *slog.Logger
	// MinBackoff is the wait before the first restart (default 500ms); it
	// doubles after each failure up to MaxBackoff (default 30s).
	MinBackoff, MaxBackoff time.Duration
	// StableAfter is how long a service must run before a failure is
	// treated as a fresh one again (default 1 minute).
	StableAfter time.Duration
	// OnRestart, if set, is called before each restart (tests, metrics).
	OnRestart func(name string, attempt int, wait time.Duration, err error)
}

func (s *Supervisor) defaults() (minB, maxB, stable time.Duration, log *slog.Logger) {
	minB, maxB, stable, log = s.MinBackoff, s.MaxBackoff, s.StableAfter, s.Log
	if minB <= 0 {
		minB = 500 * time.Millisecond
	}
	if maxB < minB {
		maxB = max(30*time.Second, minB)
	}
	if stable <= 0 {
		stable = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return minB, maxB, stable, log
}

// Run starts every service and blocks until ctx ends and all of them have
// returned.
func (s *Supervisor) Run(ctx context.Context, services ...Service) {
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.supervise(ctx, svc)
		}()
	}
	wg.Wait()
}

func (s *Supervisor) supervise(ctx context.Context, svc Service) {
	minB, maxB, stable, log := s.defaults()
	log = log.With("component", svc.Name)
	wait := minB
	for attempt := 1; ; attempt++ {
		started := time.Now()
		err := runOnce(ctx, svc)
		if ctx.Err() != nil {
			if err != nil {
				log.Warn("component stopped with an error", "err", err)
			} else {
				log.Debug("component stopped")
			}
			return
		}
		if err == nil {
			err = errors.New("returned without being asked to stop")
		}
		if time.Since(started) >= stable {
			wait, attempt = minB, 1
		}
		log.Error("component failed; restarting", "err", err, "attempt", attempt, "restart_in", wait)
		if s.OnRestart != nil {
			s.OnRestart(svc.Name, attempt, wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, maxB)
	}
}

// runOnce turns a panic into an error so that one broken component does not
// take the whole process (and every other component) down with it.
func runOnce(ctx context.Context, svc Service) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return svc.Run(ctx)
}
