package installer

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/AlecAivazis/survey/v2"
	"github.com/AlecAivazis/survey/v2/core"
	"github.com/AlecAivazis/survey/v2/terminal"
)

// Prompter asks the sysadmin one question at a time. The wizard only talks
// to this interface: survey (unmaintained upstream) stays behind it, and
// tests answer from a script.
type Prompter interface {
	// Input asks for a line of text; validate (may be nil) rejects an answer
	// and the question is asked again.
	Input(msg, def string, validate func(string) error) (string, error)
	// Secret asks without echo; an empty answer returns "".
	Secret(msg string, validate func(string) error) (string, error)
	Confirm(msg string, def bool) (bool, error)
	Select(msg string, options []string, def string) (string, error)
	MultiSelect(msg string, options, defs []string, validate func([]string) error) ([]string, error)
}

// ErrNoTerminal is returned by prompts when there is nobody to ask.
var ErrNoTerminal = errors.New("no terminal to ask questions on: run it from a terminal, or unattended with --answers FILE (a setup.yaml; see \"hearth setup --help\")")

// SurveyPrompter asks on a terminal with survey.
type SurveyPrompter struct {
	In       terminal.FileReader
	Out      terminal.FileWriter
	Err      io.Writer
	HelpText string
}

// NewTerminalPrompter uses the process's terminal, or fails with
// ErrNoTerminal when stdin or stdout is not one (survey would read EOF).
func NewTerminalPrompter() (*SurveyPrompter, error) {
	for _, f := range []*os.File{os.Stdin, os.Stdout} {
		fi, err := f.Stat()
		if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			return nil, ErrNoTerminal
		}
	}
	return &SurveyPrompter{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, nil
}

func (s *SurveyPrompter) ask(p survey.Prompt, resp any, v survey.Validator) error {
	opts := []survey.AskOpt{survey.WithStdio(s.In, s.Out, s.Err)}
	if v != nil {
		opts = append(opts, survey.WithValidator(v))
	}
	err := survey.AskOne(p, resp, opts...)
	switch {
	case errors.Is(err, io.EOF):
		return ErrNoTerminal
	case errors.Is(err, terminal.InterruptErr):
		return fmt.Errorf("setup interrupted: nothing was changed")
	}
	return err
}

func stringValidator(validate func(string) error) survey.Validator {
	if validate == nil {
		return nil
	}
	return func(ans any) error {
		s, _ := ans.(string)
		return validate(s)
	}
}

// Input implements Prompter.
func (s *SurveyPrompter) Input(msg, def string, validate func(string) error) (string, error) {
	var out string
	err := s.ask(&survey.Input{Message: msg, Default: def}, &out, stringValidator(validate))
	return out, err
}

// Secret implements Prompter.
func (s *SurveyPrompter) Secret(msg string, validate func(string) error) (string, error) {
	var out string
	err := s.ask(&survey.Password{Message: msg}, &out, stringValidator(validate))
	return out, err
}

// Confirm implements Prompter.
func (s *SurveyPrompter) Confirm(msg string, def bool) (bool, error) {
	var out bool
	err := s.ask(&survey.Confirm{Message: msg, Default: def}, &out, nil)
	return out, err
}

// Select implements Prompter.
func (s *SurveyPrompter) Select(msg string, options []string, def string) (string, error) {
	var out string
	q := &survey.Select{Message: msg, Options: options}
	for _, o := range options {
		if o == def {
			q.Default = def
		}
	}
	err := s.ask(q, &out, nil)
	return out, err
}

// MultiSelect implements Prompter.
func (s *SurveyPrompter) MultiSelect(msg string, options, defs []string, validate func([]string) error) ([]string, error) {
	var out []string
	q := &survey.MultiSelect{Message: msg, Options: options}
	var d []string
	for _, v := range defs {
		if containsStr(options, v) {
			d = append(d, v)
		}
	}
	if len(d) > 0 {
		q.Default = d
	}
	var v survey.Validator
	if validate != nil {
		v = func(ans any) error {
			var names []string
			if opts, ok := ans.([]core.OptionAnswer); ok {
				for _, o := range opts {
					names = append(names, o.Value)
				}
			}
			return validate(names)
		}
	}
	err := s.ask(q, &out, v)
	return out, err
}
