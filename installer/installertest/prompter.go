package installertest

import (
	"fmt"
	"strings"

	"github.com/merveilles/hearth/installer"
)

// Prompter answers the wizard from a script, in order. An answer its
// question's validation rejects is recorded in Rejected and the next
// scripted answer is tried, as a person would retype it.
type Prompter struct {
	// Answers are strings; for MultiSelect, comma-separated; for Confirm,
	// "y" or "n"; "" takes the question's default.
	Answers  []string
	Asked    []string
	Rejected []string
}

var _ installer.Prompter = (*Prompter)(nil)

func (p *Prompter) next(msg string) (string, error) {
	p.Asked = append(p.Asked, msg)
	if len(p.Answers) == 0 {
		return "", fmt.Errorf("installertest: no scripted answer for %q: %w", msg, installer.ErrNoTerminal)
	}
	a := p.Answers[0]
	p.Answers = p.Answers[1:]
	return a, nil
}

func (p *Prompter) check(msg, a string, err error) bool {
	if err != nil {
		p.Rejected = append(p.Rejected, fmt.Sprintf("%s %q: %v", msg, a, err))
		return false
	}
	return true
}

// Input implements installer.Prompter.
func (p *Prompter) Input(msg, def string, validate func(string) error) (string, error) {
	for {
		a, err := p.next(msg)
		if err != nil {
			return "", err
		}
		if a == "" {
			a = def
		}
		if validate == nil || p.check(msg, a, validate(a)) {
			return a, nil
		}
	}
}

// Secret implements installer.Prompter.
func (p *Prompter) Secret(msg string, validate func(string) error) (string, error) {
	return p.Input(msg, "", validate)
}

// Confirm implements installer.Prompter.
func (p *Prompter) Confirm(msg string, def bool) (bool, error) {
	a, err := p.next(msg)
	if err != nil {
		return false, err
	}
	if a == "" {
		return def, nil
	}
	return a == "y", nil
}

// Select implements installer.Prompter: the answer is an option's prefix.
func (p *Prompter) Select(msg string, options []string, def string) (string, error) {
	for {
		a, err := p.next(msg)
		if err != nil {
			return "", err
		}
		if a == "" {
			return def, nil
		}
		for _, o := range options {
			if strings.HasPrefix(o, a) {
				return o, nil
			}
		}
		p.Rejected = append(p.Rejected, fmt.Sprintf("%s %q: not among %q", msg, a, options))
	}
}

// MultiSelect implements installer.Prompter.
func (p *Prompter) MultiSelect(msg string, options, defs []string, validate func([]string) error) ([]string, error) {
	for {
		a, err := p.next(msg)
		if err != nil {
			return nil, err
		}
		sel := defs
		if a == "-" {
			sel = nil
		} else if a != "" {
			sel = strings.Split(a, ",")
		}
		ok := true
		for _, s := range sel {
			found := false
			for _, o := range options {
				found = found || o == s
			}
			if !found {
				p.Rejected = append(p.Rejected, fmt.Sprintf("%s %q: not an option", msg, s))
				ok = false
			}
		}
		if ok && (validate == nil || p.check(msg, a, validate(sel))) {
			return sel, nil
		}
	}
}
