package installer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Runner runs a command on the host. Steps never call os/exec themselves,
// so tests can script a host's answers and see exactly what would run.
type Runner interface {
	// Run runs name with args and returns its standard output. A non-zero
	// exit is an error that carries the command's standard error.
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// Host is the machine setup changes: a root directory that every managed
// path lives under ("/" for real, a temporary directory in tests), a command
// runner, and the installer's record of the files it wrote.
type Host struct {
	// Root prefixes every path steps read or write.
	Root string
	Run  Runner
	// Force overwrites managed files that were edited by hand.
	Force bool
	// Log receives progress while applying; nil discards it.
	Log io.Writer
	// Sleep waits between polls (systemd readiness); nil uses time.Sleep
	// bounded by ctx. Tests make it instant.
	Sleep func(ctx context.Context, d time.Duration) error
}

// NewHost returns the real machine.
func NewHost(log io.Writer) *Host {
	return &Host{Root: "/", Run: ExecRunner{}, Log: log}
}

// Path maps an absolute host path under Root.
func (h *Host) Path(p string) string {
	if !filepath.IsAbs(p) {
		panic("installer: host path must be absolute: " + p)
	}
	return filepath.Join(h.Root, p)
}

// ReadFile reads a host file; a missing file is (nil, false, nil).
func (h *Host) ReadFile(p string) ([]byte, bool, error) {
	b, err := os.ReadFile(h.Path(p))
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", p, err)
	}
	return b, true, nil
}

// Exists reports whether a host path exists.
func (h *Host) Exists(p string) bool {
	_, err := os.Lstat(h.Path(p))
	return err == nil
}

// Cmd runs a command through the host's runner.
func (h *Host) Cmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	return h.Run.Run(ctx, nil, name, args...)
}

func (h *Host) logf(format string, args ...any) {
	if h.Log != nil {
		fmt.Fprintf(h.Log, format+"\n", args...)
	}
}

func (h *Host) sleep(ctx context.Context, d time.Duration) error {
	if h.Sleep != nil {
		return h.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ExecRunner runs real commands, in the C locale so their output parses
// the same everywhere.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		if msg != "" {
			return out.Bytes(), fmt.Errorf("%s: %w: %s", CommandLine(name, args...), err, msg)
		}
		return out.Bytes(), fmt.Errorf("%s: %w", CommandLine(name, args...), err)
	}
	return out.Bytes(), nil
}

// CommandLine is how a command is shown in plans and errors.
func CommandLine(name string, args ...string) string {
	parts := []string{name}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
