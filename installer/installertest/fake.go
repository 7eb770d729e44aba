// Package installertest is a fake host for installer step tests: a
// temporary root directory and a scripted command runner that records what
// would have run.
package installertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/merveilles/hearth/installer"
)

// Reply is a scripted command result.
type Reply struct {
	Out string
	Err error
}

// Runner answers commands from a script and records every call.
type Runner struct {
	mu sync.Mutex
	// replies by exact command line (installer.CommandLine form).
	exact map[string]func(stdin []byte) Reply
	// prefix handlers, tried longest first after exact matches.
	prefix map[string]func(line string, stdin []byte) Reply
	calls  []string
}

// NewRunner returns a runner that fails every command not scripted.
func NewRunner() *Runner {
	return &Runner{exact: map[string]func([]byte) Reply{}, prefix: map[string]func(string, []byte) Reply{}}
}

// On scripts the output of one exact command line.
func (r *Runner) On(line, out string) {
	r.OnFunc(line, func([]byte) Reply { return Reply{Out: out} })
}

// OnErr scripts a failing command.
func (r *Runner) OnErr(line string, err error) {
	r.OnFunc(line, func([]byte) Reply { return Reply{Err: err} })
}

// OnFunc scripts a command with a function (to change fake state).
func (r *Runner) OnFunc(line string, f func(stdin []byte) Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exact[line] = f
}

// OnPrefix answers every command line starting with prefix.
func (r *Runner) OnPrefix(prefix string, f func(line string, stdin []byte) Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prefix[prefix] = f
}

// Run implements installer.Runner.
func (r *Runner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	line := installer.CommandLine(name, args...)
	r.mu.Lock()
	r.calls = append(r.calls, line)
	f := r.exact[line]
	var pf func(string, []byte) Reply
	if f == nil {
		best := ""
		for p, h := range r.prefix {
			if strings.HasPrefix(line, p) && len(p) > len(best) {
				best, pf = p, h
			}
		}
	}
	r.mu.Unlock()
	var rep Reply
	switch {
	case f != nil:
		rep = f(stdin)
	case pf != nil:
		rep = pf(line, stdin)
	default:
		return nil, fmt.Errorf("installertest: unscripted command %q", line)
	}
	return []byte(rep.Out), rep.Err
}

// Calls returns the command lines run so far.
func (r *Runner) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// Reset forgets recorded calls.
func (r *Runner) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

// Host returns a host rooted in a fresh temporary directory with the fake
// runner, and files (host path → content) written into it.
func Host(t testing.TB, files map[string]string) (*installer.Host, *Runner) {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		WriteFile(t, root, p, c)
	}
	r := NewRunner()
	h := &installer.Host{Root: root, Run: r,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}
	return h, r
}

// WriteFile writes a file under root at host path p.
func WriteFile(t testing.TB, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ExitError is a command's non-zero exit, as exec.ExitError reports it.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// ExitCode is what the installer reads from exec.ExitError.
func (e ExitError) ExitCode() int { return e.Code }
