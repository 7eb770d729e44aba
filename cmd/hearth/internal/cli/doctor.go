package cli

import (
	"fmt"

	"github.com/merveilles/hearth/doctor"
)

// Doctor checks the host and the service and says what to fix.
func Doctor(env Env, args []string) int {
	fs := newFlagSet("doctor", "hearth doctor [--config FILE] [--json]", `
Check everything hearth depends on, like "prosodyctl check": the
configuration; DNS A/AAAA records for the domain and its subdomains and the
SRV records (_xmpp-client, _xmpps-client, _xmpp-server); the certificate's
names and expiry; the ports; the ufw rules setup planned; nginx -t; the
service; free disk on the data volume; memory; clock synchronisation;
whether a reboot is required; pending security updates.

Exit status: 0 when everything is fine, 2 when something needs a look
(a warning or an error), 1 when doctor itself could not run. Run it as root
for the firewall check.`)
	file := fs.String("config", "/etc/hearth/hearth.yaml", "configuration `file`")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	if code, done := parse(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	rep := doctor.Run(env.Ctx, doctor.Real(*file))
	if *asJSON {
		if err := rep.WriteJSON(env.Stdout); err != nil {
			return fail(env, "doctor", err)
		}
	} else {
		rep.WriteText(env.Stdout)
	}
	return rep.ExitCode()
}
