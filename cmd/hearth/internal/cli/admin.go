package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/merveilles/hearth/server/admin"
	"github.com/merveilles/hearth/server/config"
)

// defaultConfig is where `hearth setup` puts the configuration; admin uses
// it when neither --data nor --config is given and it exists.
const defaultConfig = "/etc/hearth/hearth.yaml"

// defaultDataDir is where an installed hearth keeps its data and socket.
const defaultDataDir = "/var/lib/hearth"

const adminText = `
Manage accounts and rooms. hearth admin talks to the running daemon over
its admin socket, so changes apply to live sessions at once (a deleted or
disabled user is disconnected, those in a room see its changes). When the
daemon is stopped it opens the database directly ("user add" and "user
import" create it for an instance that has never run, so accounts can be
provisioned before the first start).

The instance is chosen with --data DIR (a "hearth dev" data directory) or
--config FILE (a "hearth run" configuration). Without either, it uses
` + defaultConfig + ` if that exists (or, for a chat admin who may not
read it, the socket in ` + defaultDataDir + `), else --data hearth-data.

Commands:
  user add JID [--password-stdin] [--role admin|member|limited]
        create an account; without --password-stdin a password is
        generated and printed
  user list [--json]
  user passwd JID [--password-stdin]
        set a new password (generated and printed unless given on stdin)
  user disable JID      refuse logins and end the user's sessions
  user enable JID
  user delete JID       delete the account with all its data
  user import FILE [--replace] [--role ROLE]
        create accounts from FILE ("-" for stdin): one "localpart password"
        per line; blank lines and lines starting with # are skipped. A file
        with any bad line is refused as a whole. Existing accounts are
        skipped unless --replace.
  room create NAME --owner USER [--member USER] [--plaintext]
        [--retention 30d] [--title T]
  room list [--json]
  room show NAME [--json]
  room set NAME [--plaintext|--encrypted] [--retention 30d|default]
        [--title T] [--public|--hidden] [--open|--members-only]
        [--moderated|--unmoderated]
  room destroy NAME [--alternate ROOM] [--reason TEXT] [--yes]
  room members NAME [--add USER [--as member|admin|owner] | --remove USER
        | --ban USER]

JID and USER are a bare JID on this server's domain (alice@example.org) or
just the user name (alice). NAME is a room's name (general) or its JID
(general@rooms.example.org). Every room command takes --json. Run
"hearth admin room --help" for more.`

// instanceFlags are accepted before the user command and after it.
type instanceFlags struct {
	data, config, domain string
}

func (f *instanceFlags) register(fs *flag.FlagSet, defaults instanceFlags) {
	fs.StringVar(&f.data, "data", defaults.data, "data `directory` of a \"hearth dev\" instance")
	fs.StringVar(&f.config, "config", defaults.config, "configuration `file` of a \"hearth run\" instance")
	fs.StringVar(&f.domain, "domain", defaults.domain, "with --data and the daemon stopped: the `domain` given to \"hearth dev --domain\"")
}

func (f instanceFlags) load() (*config.Config, error) {
	if f.data != "" && f.config != "" {
		return nil, errors.New("give --data or --config, not both")
	}
	if f.config != "" && f.domain != "" {
		return nil, errors.New("--domain goes with --data; with --config the domain comes from the file")
	}
	if f.config == "" && f.data == "" {
		switch fh, err := os.Open(defaultConfig); {
		case err == nil:
			fh.Close()
			f.config = defaultConfig
		case errors.Is(err, os.ErrPermission):
			// A chat admin (group hearth-admin) may not read the config,
			// which holds secrets, but may use the daemon's socket in the
			// installed data directory; the daemon tells the domain.
			f.data = defaultDataDir
		default:
			f.data = "hearth-data"
		}
	}
	if f.config != "" {
		return config.Load(f.config)
	}
	domain := f.domain
	if domain == "" {
		domain = "localhost"
	}
	cfg := config.Default(domain)
	cfg.DataDir = f.data
	cfg.TLS.SelfSigned = true // as "hearth dev" sets it; Validate refuses a config without certificates
	return cfg, cfg.Validate()
}

// Admin runs `hearth admin ...`.
func Admin(env Env, args []string) int {
	fs := newFlagSet("admin", "hearth admin [--data DIR | --config FILE] user|room COMMAND [args]", adminText)
	var inst instanceFlags
	inst.register(fs, instanceFlags{})
	if code, done := parse(fs, args, env); done {
		return code
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError(env, fs, errors.New("missing command (user ... or room ...)"))
	}
	switch rest[0] {
	case "user":
		return adminGroup(env, inst, "user", userCommands(), rest[1:])
	case "room":
		return adminGroup(env, inst, "room", roomCommands(), rest[1:])
	default:
		return usageError(env, fs, fmt.Errorf("unknown command %q (\"user\" or \"room\")", rest[0]))
	}
}

// userCmd is one command of a group ("user add", "room create").
type userCmd struct {
	name, synopsis, text string
	args                 int  // positional arguments required
	creates              bool // may create the database of a never-started instance
	flags                func(fs *flag.FlagSet) func(c *userCall) error
}

// userCall is one resolved invocation.
type userCall struct {
	env  Env
	ops  admin.Ops
	args []string
}

// usageErr marks an error in the arguments that only shows once the
// command runs (conflicting flags): it exits with ExitUsage.
type usageErr struct{ error }

func (e usageErr) Unwrap() error { return e.error }

// adminGroup runs one command of a group (user, room).
func adminGroup(env Env, parent instanceFlags, group string, cmds []userCmd, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := env.Stderr
		if len(args) > 0 {
			w = env.Stdout
		}
		fmt.Fprintf(w, "Usage:\n  hearth admin [--data DIR | --config FILE] %s COMMAND [args]\n\nCommands:\n", group)
		for _, c := range cmds {
			fmt.Fprintf(w, "  %s\n", c.synopsis)
		}
		fmt.Fprintf(w, "\nRun \"hearth admin %s COMMAND --help\" for details.\n", group)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	var cmd *userCmd
	for i := range cmds {
		if cmds[i].name == args[0] {
			cmd = &cmds[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(env.Stderr, "hearth admin %s: unknown command %q\nRun \"hearth admin %s --help\" for the list.\n", group, args[0], group)
		return ExitUsage
	}
	fs := newFlagSet("admin "+group+" "+cmd.name, "hearth admin [--data DIR | --config FILE] "+group+" "+cmd.synopsis, cmd.text)
	var inst instanceFlags
	inst.register(fs, parent)
	run := cmd.flags(fs)
	pos, code, done := parseInterspersed(fs, args[1:], env)
	if done {
		return code
	}
	if len(pos) != cmd.args {
		return usageError(env, fs, fmt.Errorf("expected %d argument(s), got %d", cmd.args, len(pos)))
	}
	cfg, err := inst.load()
	if err != nil {
		return usageError(env, fs, err)
	}
	_, statErr := os.Stat(cfg.DBPath())
	ops, err := admin.Connect(env.Ctx, cfg, cmd.creates)
	if err != nil {
		return fail(env, "admin", err)
	}
	defer ops.Close()
	if info, err := ops.Info(env.Ctx); err == nil && !info.Daemon {
		if os.IsNotExist(statErr) {
			fmt.Fprintf(env.Stderr, "note: hearth is not running and %s did not exist; created a new database\n", cfg.DBPath())
		} else {
			fmt.Fprintf(env.Stderr, "note: hearth is not running; working on %s directly\n", cfg.DBPath())
		}
	}
	if err := run(&userCall{env: env, ops: ops, args: pos}); err != nil {
		var ue usageErr
		if errors.As(err, &ue) {
			return usageError(env, fs, ue.error)
		}
		return fail(env, "admin "+group+" "+cmd.name, err)
	}
	return ExitOK
}

func userCommands() []userCmd {
	return []userCmd{
		{name: "add", args: 1, creates: true, synopsis: "add JID [--password-stdin] [--role admin|member|limited]",
			text: "Create an account. Without --password-stdin a strong password is generated and printed.",
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				stdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
				role := fs.String("role", "member", "server `role`: admin, member or limited")
				return func(c *userCall) error {
					r, err := admin.ParseRole(*role)
					if err != nil {
						return err
					}
					pw, err := maybeStdinPassword(*stdin, c.env.Stdin)
					if err != nil {
						return err
					}
					lp, gen, err := admin.AddUser(c.env.Ctx, c.ops, c.args[0], pw, r)
					if err != nil {
						return err
					}
					info, _ := c.ops.Info(c.env.Ctx)
					fmt.Fprintf(c.env.Stdout, "created %s@%s (%s)\n", lp, info.Domain, r)
					if gen != "" {
						fmt.Fprintf(c.env.Stdout, "password: %s\n", gen)
					}
					return nil
				}
			}},
		{name: "list", synopsis: "list [--json]",
			text: "List accounts: JID, role, status and (when the daemon runs) connected sessions.",
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
				return func(c *userCall) error {
					users, err := c.ops.ListUsers(c.env.Ctx)
					if err != nil {
						return err
					}
					if *asJSON {
						if users == nil {
							users = []admin.User{}
						}
						return printJSON(c.env.Stdout, users)
					}
					return printUsers(c.env.Stdout, users)
				}
			}},
		{name: "passwd", args: 1, synopsis: "passwd JID [--password-stdin]",
			text: "Set a new password. Without --password-stdin one is generated and printed. Sessions already open stay open.",
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				stdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
				return func(c *userCall) error {
					pw, err := maybeStdinPassword(*stdin, c.env.Stdin)
					if err != nil {
						return err
					}
					gen := ""
					if pw == "" {
						pw = admin.GeneratePassword()
						gen = pw
					}
					lp, err := admin.SetPassword(c.env.Ctx, c.ops, c.args[0], pw)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.env.Stdout, "password of %s changed\n", lp)
					if gen != "" {
						fmt.Fprintf(c.env.Stdout, "password: %s\n", gen)
					}
					return nil
				}
			}},
		{name: "disable", args: 1, synopsis: "disable JID",
			text: "Refuse the account's logins and end its live sessions. Its data stays.",
			flags: func(*flag.FlagSet) func(*userCall) error {
				return func(c *userCall) error {
					lp, kicked, err := admin.SetDisabled(c.env.Ctx, c.ops, c.args[0], true)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.env.Stdout, "%s disabled (%s ended)\n", lp, plural(kicked, "session"))
					return nil
				}
			}},
		{name: "enable", args: 1, synopsis: "enable JID",
			text: "Allow a disabled account to log in again.",
			flags: func(*flag.FlagSet) func(*userCall) error {
				return func(c *userCall) error {
					lp, _, err := admin.SetDisabled(c.env.Ctx, c.ops, c.args[0], false)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.env.Stdout, "%s enabled\n", lp)
					return nil
				}
			}},
		{name: "delete", args: 1, synopsis: "delete JID",
			text: "Delete the account and all its data (roster, offline messages, ...), ending its live sessions. This cannot be undone.",
			flags: func(*flag.FlagSet) func(*userCall) error {
				return func(c *userCall) error {
					lp, kicked, err := admin.DeleteUser(c.env.Ctx, c.ops, c.args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(c.env.Stdout, "%s deleted (%s ended)\n", lp, plural(kicked, "session"))
					return nil
				}
			}},
		{name: "import", args: 1, creates: true, synopsis: "import FILE [--replace] [--role ROLE]",
			text: `
Create accounts from FILE ("-" reads standard input): one "localpart password"
per line, the password being the rest of the line; blank lines and lines
starting with # are skipped. If any line is bad, every bad line is reported
with its number and nothing is imported. Keys are derived on every CPU core
with progress on standard error; accounts are written in batches.`,
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				replace := fs.Bool("replace", false, "overwrite existing accounts (default: skip them)")
				role := fs.String("role", "member", "server `role` of the new accounts")
				return func(c *userCall) error {
					r, err := admin.ParseRole(*role)
					if err != nil {
						return err
					}
					info, err := c.ops.Info(c.env.Ctx)
					if err != nil {
						return err
					}
					var in io.Reader = c.env.Stdin
					name := "standard input"
					if c.args[0] != "-" {
						f, err := os.Open(c.args[0])
						if err != nil {
							return err
						}
						defer f.Close()
						in, name = f, c.args[0]
					}
					entries, err := admin.ParseImport(in, info.Domain)
					if err != nil {
						return fmt.Errorf("%s: %w", name, err)
					}
					res, err := admin.Import(c.env.Ctx, c.ops, entries, admin.ImportOptions{
						Role: r, Replace: *replace, Progress: c.env.Stderr, TTY: c.env.StderrTTY,
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(c.env.Stdout, "imported %d accounts from %s in %s: %d created, %d replaced, %d skipped (already exist)\n",
						res.Created+res.Replaced, name, res.Elapsed.Round(10*time.Millisecond), res.Created, res.Replaced, res.Skipped)
					return nil
				}
			}},
	}
}

func maybeStdinPassword(use bool, r io.Reader) (string, error) {
	if !use {
		return "", nil
	}
	return admin.ReadPassword(r)
}

func printUsers(w io.Writer, users []admin.User) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JID\tROLE\tSTATUS\tSESSIONS\tCREATED")
	for _, u := range users {
		status := "active"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", u.JID, u.Role, status, u.Sessions, u.Created.Format("2006-01-02"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(users) == 0 {
		_, err := fmt.Fprintln(w, "(no accounts)")
		return err
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
