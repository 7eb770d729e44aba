// Package cli implements hearth's subcommands: flags, help texts and the
// wiring from a command line to the packages that do the work.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/merveilles/hearth/supervisor"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Env is what a command may touch of the outside world, so tests can run
// commands in-process.
type Env struct {
	Ctx    context.Context // ends on SIGINT/SIGTERM
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// StderrTTY redraws progress lines in place.
	StderrTTY bool
	// Ready, if set, is called once dev/run listen: tests read the bound
	// ports from the instance.
	Ready func(*supervisor.Instance)
}

// StdEnv is the real process environment; stop releases the signal
// handlers.
func StdEnv() (env Env, stop func()) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	tty := false
	if fi, err := os.Stderr.Stat(); err == nil {
		tty = fi.Mode()&os.ModeCharDevice != 0
	}
	return Env{Ctx: ctx, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, StderrTTY: tty}, stop
}

// Usage is the top-level help.
func Usage(w io.Writer) {
	fmt.Fprint(w, `hearth: a self-hosted XMPP chat server in one binary.

Usage:
  hearth COMMAND [flags]

Commands:
  dev       run a local development server (no root, no config file)
  run       run the server from a configuration file (what systemd starts)
  admin     manage accounts of a running or stopped instance
  prune     remove messages past their retention from archives and offline queues
  setup     provision this host (root): wizard or --answers FILE, plan, apply
  plan      print what setup would change on this host, changing nothing
  doctor    check DNS, certificates, ports, firewall, nginx, disk, clock, updates
  version   print the version
  help      print this help

Run "hearth COMMAND --help" for a command's flags.
`)
}

// version is set at link time: -ldflags "-X .../cli.version=v1.2.3".
var version = ""

// Version prints the version and exits.
func Version(env Env, args []string) int {
	fs := newFlagSet("version", "hearth version", "Print hearth's version, the commit it was built from and the Go version.")
	if code, done := parse(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	v, extra := version, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				extra = " commit " + s.Value
			}
		}
		extra += " " + bi.GoVersion
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	fmt.Fprintf(env.Stdout, "hearth %s%s\n", v, extra)
	return ExitOK
}

// newFlagSet makes a FlagSet whose help is synopsis, text and the flags.
func newFlagSet(name, synopsis, text string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage:\n  %s\n\n%s\n", synopsis, strings.TrimSpace(text))
		first := true
		fs.VisitAll(func(f *flag.Flag) {
			if first {
				fmt.Fprintln(w, "\nFlags:")
				first = false
			}
			printFlag(w, f)
		})
	}
	return fs
}

// printFlag is flag.PrintDefaults with the "--name" spelling this help uses
// everywhere (the flag package accepts both).
func printFlag(w io.Writer, f *flag.Flag) {
	name, usage := flag.UnquoteUsage(f)
	line := "  --" + f.Name
	if name != "" {
		line += " " + name
	}
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" || f.DefValue == "0" && name == "port" {
		usage += fmt.Sprintf(" (default %s)", f.DefValue)
	}
	fmt.Fprintf(w, "%s\n      %s\n", line, usage)
}

// parse parses flags; done means the command ends here with code (help was
// asked for, or the flags were wrong).
func parse(fs *flag.FlagSet, args []string, env Env) (code int, done bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(env.Stdout)
		fs.Usage()
		return ExitOK, true
	}
	if err != nil {
		return usageError(env, fs, err), true
	}
	return 0, false
}

// parseInterspersed allows flags after positional arguments ("user add
// alice --role admin"), which the flag package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string, env Env) (pos []string, code int, done bool) {
	for {
		if code, done := parse(fs, args, env); done {
			return nil, code, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, false
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func usageError(env Env, fs *flag.FlagSet, err error) int {
	fmt.Fprintf(env.Stderr, "hearth %s: %v\nRun \"hearth %s --help\" for usage.\n", fs.Name(), err, fs.Name())
	return ExitUsage
}

func fail(env Env, cmd string, err error) int {
	fmt.Fprintf(env.Stderr, "hearth %s: %v\n", cmd, err)
	return ExitFail
}

func newLogger(w io.Writer, level string) *slog.Logger {
	l, _ := newLevelLogger(w, level)
	return l
}

// newLevelLogger is newLogger with its level variable, which a reload
// (SIGHUP) sets from log_level.
func newLevelLogger(w io.Writer, level string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(supervisor.ParseLevel(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})), lv
}
