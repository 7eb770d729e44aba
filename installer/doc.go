// Package installer provisions a host for hearth: it is what `sudo hearth
// setup` and `hearth plan` run, as root (DESIGN.md, decision 10).
//
// Every host change is a Step. A step's Plan looks at the host and returns
// the Actions that would bring it to the wanted state (none when it is
// right); Apply runs the actions of a fresh plan, step by step, and stops
// at the first failure. Steps reach the machine only through a Host: a
// root directory for files and a Runner for commands, so tests run them
// against a temporary root and a scripted runner (package installertest),
// and the appliance test runs them for real in a booted container.
//
// Managed files are rendered, compared with the disk, written atomically
// (temporary file, check, rename, verify with rollback) and their hash
// recorded in StatePath; a file changed by hand since is not overwritten
// without --force.
//
// The wizard (Ask) talks to a Prompter; survey stays behind it, and
// --answers FILE replaces the wizard for unattended runs.
//
// installer never imports the chat server: it writes configuration (with
// server/config's loader as the check), it does not run chat.
package installer
