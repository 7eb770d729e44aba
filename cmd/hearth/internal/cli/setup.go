package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/merveilles/hearth/installer"
)

const setupText = `
Provision this host for hearth, as root: ask a few questions (or read them
from --answers FILE), show every change as a plan, ask, then apply it:
hearth.yaml, sysadmin and chat admin groups with an SSH AllowGroups
drop-in, the data volume, the firewall, and the service, which setup starts
and waits for. Running it again changes only what is not already right;
files edited by hand are not overwritten without --force.

The answers are saved in ` + installer.AnswersPath + ` (mode 0600: it holds the
OIDC client secret) and are the defaults of the next run. The same file
runs setup unattended:

  sudo hearth setup --answers setup.yaml --yes

An answers file needs at least:

  domain: chat.example.org
  acme_email: admin@example.org
  sysadmins: [ada]

and may set rooms_domain, share_domain, data_device (a block device, empty
for none), format_device (repeat data_device to allow formatting an EMPTY
device), chat_admins, federation_allowed, retention (personal_archive,
room_archive, uploads, offline_messages, invites: e.g. 30d), upload_limit_mb
and oidc (issuer, client_id, client_secret; empty for invites only).`

const planText = `
Print what "hearth setup" would change on this host, changing nothing. It
uses the saved answers (` + installer.AnswersPath + `) or --answers FILE.
Exit status 0 means nothing to change, 3 means there are changes.`

// ExitChanges is "hearth plan"'s status when the host is not as planned.
const ExitChanges = 3

// Setup runs the setup wizard and applies its plan.
func Setup(env Env, args []string) int {
	fs := newFlagSet("setup", "hearth setup [--answers FILE] [--yes] [--force]", setupText)
	answers := fs.String("answers", "", "read the answers from `FILE` instead of asking")
	yes := fs.Bool("yes", false, "apply the plan without asking")
	force := fs.Bool("force", false, "overwrite managed files that were edited by hand")
	if code, done := parse(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	return runInstaller(env, "setup", installer.Options{AnswersFile: *answers, Yes: *yes}, *force)
}

// Plan prints setup's plan.
func Plan(env Env, args []string) int {
	fs := newFlagSet("plan", "hearth plan [--answers FILE]", planText)
	answers := fs.String("answers", "", "plan with the answers in `FILE` instead of the saved ones")
	if code, done := parse(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	return runInstaller(env, "plan", installer.Options{AnswersFile: *answers, PlanOnly: true}, false)
}

func runInstaller(env Env, cmd string, o installer.Options, force bool) int {
	if os.Geteuid() != 0 {
		return fail(env, cmd, errors.New("it changes the host, so it runs as root: sudo hearth "+cmd))
	}
	o.Host = installer.NewHost(env.Stderr)
	o.Host.Force = force
	o.Out = env.Stdout
	o.Invoker = os.Getenv("SUDO_USER")
	if o.AnswersFile == "" && !o.PlanOnly {
		p, err := installer.NewTerminalPrompter()
		if err != nil {
			return fail(env, cmd, err)
		}
		o.Prompter = p
	} else if p, err := installer.NewTerminalPrompter(); err == nil && !o.Yes {
		o.Prompter = p // only to confirm the plan
	}
	changes, err := installer.Setup(env.Ctx, o)
	if err != nil {
		return fail(env, cmd, err)
	}
	if o.PlanOnly && changes {
		return ExitChanges
	}
	return ExitOK
}
