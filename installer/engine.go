package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Step is one kind of host change (firewall, data volume, accounts, …).
// Plan looks at the host and lists the actions that would bring it to the
// wanted state, changing nothing; an empty list means the host is right.
// Applying a step means running the actions of a fresh Plan in order, so
// what is shown is what runs.
type Step interface {
	Name() string
	Plan(ctx context.Context, h *Host) ([]Action, error)
}

// Action is one change a step would make.
type Action struct {
	// Summary is one line: the command that would run, or the file that
	// would be written.
	Summary string
	// Detail is shown indented under the summary: a diff, a file's content.
	Detail string
	// Blocked, when set, is why this action must not run (a file edited by
	// hand without --force, a change that would lock the sysadmin out).
	// A plan with a blocked action is not applied at all.
	Blocked string
	// Do makes the change. It must leave the host consistent when it fails.
	Do func(ctx context.Context, h *Host) error
}

// RunAction is an action that runs one command.
func RunAction(name string, args ...string) Action {
	return Action{
		Summary: "run: " + CommandLine(name, args...),
		Do: func(ctx context.Context, h *Host) error {
			_, err := h.Cmd(ctx, name, args...)
			return err
		},
	}
}

// StepPlan is the plan of one step.
type StepPlan struct {
	Step    string
	Actions []Action
}

// Plan is the plan of every step, in order.
type Plan []StepPlan

// Empty reports whether nothing would change.
func (p Plan) Empty() bool {
	for _, s := range p {
		if len(s.Actions) > 0 {
			return false
		}
	}
	return true
}

// Blocked lists the reasons some action may not run.
func (p Plan) Blocked() []string {
	var out []string
	for _, s := range p {
		for _, a := range s.Actions {
			if a.Blocked != "" {
				out = append(out, fmt.Sprintf("%s: %s", s.Step, a.Blocked))
			}
		}
	}
	return out
}

// Write prints the plan for a person to read.
func (p Plan) Write(w io.Writer) {
	for _, s := range p {
		if len(s.Actions) == 0 {
			fmt.Fprintf(w, "%s: no changes\n", s.Step)
			continue
		}
		fmt.Fprintf(w, "%s:\n", s.Step)
		for _, a := range s.Actions {
			mark := "  + "
			if a.Blocked != "" {
				mark = "  ! "
			}
			fmt.Fprintf(w, "%s%s\n", mark, a.Summary)
			if a.Blocked != "" {
				fmt.Fprintf(w, "      REFUSED: %s\n", a.Blocked)
			}
			if a.Detail != "" {
				for _, line := range strings.Split(strings.TrimRight(a.Detail, "\n"), "\n") {
					fmt.Fprintf(w, "      %s\n", line)
				}
			}
		}
	}
}

// MakePlan plans every step against the host as it is now. A step that
// cannot plan stops planning: its error says what is wrong with the host.
func MakePlan(ctx context.Context, h *Host, steps []Step) (Plan, error) {
	var p Plan
	for _, s := range steps {
		acts, err := s.Plan(ctx, h)
		if err != nil {
			return p, fmt.Errorf("plan %s: %w", s.Name(), err)
		}
		p = append(p, StepPlan{Step: s.Name(), Actions: acts})
	}
	return p, nil
}

// ErrBlocked is returned by Apply when some action may not run.
var ErrBlocked = errors.New("the plan has refused changes")

// Apply brings the host to the wanted state, step by step. Each step is
// planned again just before it runs, because earlier steps change what it
// sees (a written config makes the service restart). The first failure
// stops everything: later steps are not applied, and the error names the
// step and the action.
func Apply(ctx context.Context, h *Host, steps []Step) error {
	whole, err := MakePlan(ctx, h, steps)
	if err != nil {
		return err
	}
	if b := whole.Blocked(); len(b) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrBlocked, strings.Join(b, "\n  "))
	}
	for _, s := range steps {
		acts, err := s.Plan(ctx, h)
		if err != nil {
			return fmt.Errorf("plan %s: %w (later steps not applied)", s.Name(), err)
		}
		for _, a := range acts {
			if a.Blocked != "" {
				return fmt.Errorf("%s: %s: %w (later steps not applied)", s.Name(), a.Blocked, ErrBlocked)
			}
			h.logf("%s: %s", s.Name(), a.Summary)
			if err := a.Do(ctx, h); err != nil {
				return fmt.Errorf("%s: %s: %w (later steps not applied)", s.Name(), a.Summary, err)
			}
		}
	}
	return nil
}
