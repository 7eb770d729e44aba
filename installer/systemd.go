package installer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"
)

// Service is the last step: systemd knows the unit, it is enabled, running
// with the current configuration, and has told systemd it is ready.
type Service struct {
	Unit string // hearth.service
	// Config is the file whose change requires a restart.
	Config string
	// Timeout bounds the wait for READY.
	Timeout time.Duration
}

// Name implements Step.
func (Service) Name() string { return "service" }

func (s Service) mark() string { return "started-config:" + s.Unit }

// unitState is what "systemctl show" says about a unit.
type unitState map[string]string

func (h *Host) showUnit(ctx context.Context, unit string) (unitState, error) {
	out, err := h.Cmd(ctx, "systemctl", "show", "-p", "LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,StatusText", unit)
	if err != nil {
		return nil, fmt.Errorf("ask systemd about %s: %w", unit, err)
	}
	st := unitState{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			st[k] = v
		}
	}
	return st, nil
}

// Plan implements Step.
func (s Service) Plan(ctx context.Context, h *Host) ([]Action, error) {
	st, err := h.showUnit(ctx, s.Unit)
	if err != nil {
		return nil, err
	}
	var acts []Action
	if st["NeedDaemonReload"] == "yes" || st["LoadState"] == "not-found" {
		acts = append(acts, RunAction("systemctl", "daemon-reload"))
	}
	if st["UnitFileState"] != "enabled" {
		acts = append(acts, RunAction("systemctl", "enable", s.Unit))
	}
	cfg, _, err := h.ReadFile(s.Config)
	if err != nil {
		return nil, err
	}
	state, err := h.LoadState()
	if err != nil {
		return nil, err
	}
	cfgHash := Hash(cfg)
	switch {
	case st["ActiveState"] != "active":
		acts = append(acts, s.startAction("start", cfgHash))
	case state.Marks[s.mark()] != cfgHash:
		a := s.startAction("restart", cfgHash)
		a.Summary += " (" + s.Config + " changed since it started)"
		acts = append(acts, a)
	}
	return acts, nil
}

// startAction starts or restarts the unit, waits until systemd reports it
// active (Type=notify: after READY=1) and records the configuration it runs
// with.
func (s Service) startAction(verb, cfgHash string) Action {
	return Action{
		Summary: "run: " + CommandLine("systemctl", verb, s.Unit) + ", then wait for READY",
		Do: func(ctx context.Context, h *Host) error {
			if _, err := h.Cmd(ctx, "systemctl", verb, s.Unit); err != nil {
				return fmt.Errorf("%w%s", err, s.journal(ctx, h))
			}
			if err := s.waitReady(ctx, h); err != nil {
				return err
			}
			return h.UpdateState(func(st *State) { st.Marks[s.mark()] = cfgHash })
		},
	}
}

func (s Service) waitReady(ctx context.Context, h *Host) error {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		st, err := h.showUnit(ctx, s.Unit)
		if err != nil {
			return err
		}
		switch st["ActiveState"] {
		case "active":
			h.logf("service: %s is ready: %s", s.Unit, st["StatusText"])
			return nil
		case "failed", "inactive":
			return fmt.Errorf("%s is %s (%s)%s", s.Unit, st["ActiveState"], st["SubState"], s.journal(ctx, h))
		}
		if err := h.sleep(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("%s did not report READY within %s (state %s)%s", s.Unit, timeout, st["ActiveState"], s.journal(context.Background(), h))
		}
	}
}

// journal is the unit's last log lines, so a failure says why.
func (s Service) journal(ctx context.Context, h *Host) string {
	out, err := h.Cmd(ctx, "journalctl", "-u", s.Unit, "-n", "15", "--no-pager", "-o", "cat")
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return ""
	}
	return "\nlast log lines:\n  " + strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n  ")
}

// Status is how the service reports itself after setup.
func Status(ctx context.Context, h *Host, unit string) (string, error) {
	st, err := h.showUnit(ctx, unit)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s (%s) %s", unit, st["ActiveState"], st["SubState"], st["StatusText"]), nil
}
