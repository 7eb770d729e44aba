package templates

import _ "embed"

// unitText is the systemd unit the .deb installs as
// /lib/systemd/system/hearth.service (nfpm.yaml ships this same file).
// It is fixed rather than rendered: every host runs the same sandbox, and
// local changes belong in a drop-in (systemctl edit hearth).
//
//go:embed hearth.service
var unitText string

// UnitPath is where the package installs the unit.
const UnitPath = "/lib/systemd/system/hearth.service"

// Unit returns the systemd unit, so "hearth setup" and "hearth doctor" can
// check that the installed unit is the one this binary was built with.
func Unit() []byte { return []byte(unitText) }
