package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/merveilles/hearth/server/admin"
	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/supervisor"
)

// devAdmin is the account dev creates on first start.
const devAdmin = "admin"

// Dev runs a development server from built-in defaults.
func Dev(env Env, args []string) int {
	fs := newFlagSet("dev", "hearth dev [flags]", `
Run a development server with the built-in defaults: no root and no
configuration file. It listens on 127.0.0.1 only, makes a self-signed
certificate in the data directory, and on first start creates the account
admin@DOMAIN with a generated password, which it prints once and keeps in
DATA/admin-password.txt. Accounts are managed with "hearth admin --data DATA".
Stop it with Ctrl-C.

A port of 0 picks a free port (the log says which).`)
	data := fs.String("data", "hearth-data", "data `directory` (database, certificate, admin socket)")
	domain := fs.String("domain", "localhost", "chat `domain`: accounts are user@DOMAIN")
	bind := fs.String("bind", "127.0.0.1", "`IP` address to listen on")
	c2s := fs.Int("c2s-port", 5222, "client `port` with STARTTLS")
	tlsPort := fs.Int("tls-port", 5223, "client `port` with direct TLS (XEP-0368, ALPN xmpp-client)")
	httpPort := fs.Int("http-port", 5280, "HTTP `port` (kept in the configuration; nothing serves HTTP yet)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	e2eePolicy := fs.String("e2ee", "required", "end-to-end encryption `policy` for 1:1 messages: required (plaintext bounces), optional (delivered with a notice) or off")
	if code, done := parse(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	dir, err := filepath.Abs(*data)
	if err != nil {
		return fail(env, "dev", err)
	}
	cfg := config.Default(*domain)
	cfg.DataDir = dir
	cfg.TLS.SelfSigned = true
	cfg.Listen.Addresses = []string{*bind}
	cfg.Listen.C2SPort, cfg.Listen.TLSPort, cfg.Listen.HTTPPort = *c2s, *tlsPort, *httpPort
	cfg.LogLevel = *logLevel
	cfg.E2EE.Policy = *e2eePolicy
	if err := cfg.Validate(); err != nil {
		return usageError(env, fs, err)
	}
	log := newLogger(env.Stderr, cfg.LogLevel)
	if ip := net.ParseIP(*bind); ip != nil && !ip.IsLoopback() {
		log.Warn("dev mode is listening beyond this machine; its self-signed certificate and printed admin password are meant for local use", "bind", *bind)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(env, "dev", fmt.Errorf("create data directory: %w", err))
	}
	inst, err := supervisor.Start(cfg, log)
	if err != nil {
		return fail(env, "dev", err)
	}
	if err := ensureDevAdmin(env.Ctx, inst.Server().Store, cfg, env.Stdout); err != nil {
		_ = inst.Close()
		return fail(env, "dev", err)
	}
	log.Info("hearth dev is ready", "domain", cfg.Domain, "data", dir, "admin", "hearth admin --data "+dir+" user list")
	if env.Ready != nil {
		env.Ready(inst)
	}
	if err := inst.Run(env.Ctx); err != nil {
		return fail(env, "dev", err)
	}
	return ExitOK
}

// ensureDevAdmin creates admin@DOMAIN on first start and prints its
// password once; later starts only say where the password is kept.
func ensureDevAdmin(ctx context.Context, st store.Accounts, cfg *config.Config, out io.Writer) error {
	jid := devAdmin + "@" + cfg.Domain
	pwFile := filepath.Join(cfg.DataDir, "admin-password.txt")
	_, err := st.GetAccount(ctx, devAdmin)
	if err == nil {
		if _, serr := os.Stat(pwFile); serr == nil {
			fmt.Fprintf(out, "Admin account: %s (its first password is in %s)\n", jid, pwFile)
		} else {
			fmt.Fprintf(out, "Admin account: %s (set a new password with: hearth admin --data %s user passwd %s)\n", jid, cfg.DataDir, jid)
		}
		return nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("look up the admin account: %w", err)
	}
	pw := admin.GeneratePassword()
	a, err := admin.NewAccount(devAdmin, pw, store.RoleAdmin, cfg.Auth.ScramIterations)
	if err != nil {
		return err
	}
	// The file comes first: an admin account whose password nobody knows
	// would be worse than a password file for an account not yet made.
	if err := writePrivate(pwFile, pw+"\n"); err != nil {
		return err
	}
	if err := st.CreateAccount(ctx, a); err != nil {
		return fmt.Errorf("create the admin account: %w", err)
	}
	fmt.Fprintf(out, `
================================================================
  hearth dev: admin account created

    JID:       %s
    password:  %s

  The password is also saved in %s
  (it is not printed again).
================================================================

`, jid, pw, pwFile)
	return nil
}

// writePrivate writes a file only the owner can read, also when it already
// existed with a wider mode.
func writePrivate(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Run runs the server from a configuration file under the supervisor.
func Run(env Env, args []string) int {
	fs := newFlagSet("run", "hearth run [--config FILE]", `
Run the server from a configuration file, with every component (the XMPP
server, the admin socket) supervised: a failed component is restarted with
exponential backoff. This is what the systemd unit starts; with NOTIFY_SOCKET
set it reports READY=1, its session count (STATUS=) and STOPPING=1.

Signals: SIGTERM or SIGINT stop cleanly (streams end with system-shutdown);
SIGHUP ("systemctl reload hearth") re-reads the configuration file and the
TLS certificate without dropping sessions. Limits, the E2EE policy, the
stream management window, retention and log_level change at once; domain,
data_dir, data_volume, listen, tls, acme and admin need a restart (a reload
logs each such change and keeps the running value). An invalid file changes
nothing: the error is logged and the running configuration stays.`)
	file := fs.String("config", "/etc/hearth/hearth.yaml", "configuration `file`")
	if code, done := parse(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return fail(env, "run", err)
	}
	if err := cfg.CheckDataVolume(); err != nil {
		return fail(env, "run", err)
	}
	log, level := newLevelLogger(env.Stderr, cfg.LogLevel)
	inst, err := supervisor.Start(cfg, log)
	if err != nil {
		return fail(env, "run", err)
	}
	inst.ConfigFile, inst.LogLevel = *file, level
	log.Info("hearth is ready", "domain", cfg.Domain, "config", *file)
	if env.Ready != nil {
		env.Ready(inst)
	}
	if err := inst.Run(env.Ctx); err != nil {
		return fail(env, "run", err)
	}
	return ExitOK
}
