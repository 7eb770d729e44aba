// Command hearth is the whole chat appliance: the server, its supervisor
// and its administration tools. main only picks the subcommand; package cli
// does the rest.
package main

import (
	"fmt"
	"os"

	"github.com/merveilles/hearth/cmd/hearth/internal/cli"
)

func main() {
	env, stop := cli.StdEnv()
	code := dispatch(env, os.Args[1:])
	stop()
	os.Exit(code)
}

func dispatch(env cli.Env, args []string) int {
	if len(args) == 0 {
		cli.Usage(env.Stderr)
		return cli.ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return cli.Dev(env, rest)
	case "run":
		return cli.Run(env, rest)
	case "admin":
		return cli.Admin(env, rest)
	case "prune":
		return cli.Prune(env, rest)
	case "setup":
		return cli.Setup(env, rest)
	case "plan":
		return cli.Plan(env, rest)
	case "doctor":
		return cli.Doctor(env, rest)
	case "version", "--version":
		return cli.Version(env, rest)
	case "help", "-h", "-help", "--help":
		cli.Usage(env.Stdout)
		return cli.ExitOK
	default:
		fmt.Fprintf(env.Stderr, "hearth: unknown command %q\n\n", cmd)
		cli.Usage(env.Stderr)
		return cli.ExitUsage
	}
}
