package templates

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"
)

// parseUnit reads a systemd unit into "Section.Key" → values, in order.
func parseUnit(t *testing.T, text []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: not a key=value in a section: %q", n, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// The unit is the service's sandbox: each setting here is a promise made in
// DESIGN.md (decision 9) or the packaging issue, so dropping one fails.
func TestUnitSandbox(t *testing.T) {
	u := parseUnit(t, Unit())
	want := map[string][]string{
		"Unit.RequiresMountsFor":          {"/var/lib/hearth"},
		"Service.Type":                    {"notify"},
		"Service.NotifyAccess":            {"main"},
		"Service.WatchdogSec":             {"60s"},
		"Service.ExecStart":               {"/usr/bin/hearth run --config /etc/hearth/hearth.yaml"},
		"Service.User":                    {"hearth"},
		"Service.Group":                   {"hearth"},
		"Service.StateDirectory":          {"hearth"},
		"Service.LimitNOFILE":             {"65536"},
		"Service.CapabilityBoundingSet":   {""},
		"Service.AmbientCapabilities":     {""},
		"Service.NoNewPrivileges":         {"yes"},
		"Service.ProtectSystem":           {"strict"},
		"Service.ProtectHome":             {"yes"},
		"Service.PrivateTmp":              {"yes"},
		"Service.PrivateDevices":          {"yes"},
		"Service.RestrictAddressFamilies": {"AF_INET AF_INET6 AF_UNIX"},
		"Service.SystemCallFilter":        {"@system-service", "~@privileged @resources", "@chown"},
		"Service.SystemCallArchitectures": {"native"},
		"Service.MemoryDenyWriteExecute":  {"yes"},
		"Service.RestrictNamespaces":      {"yes"},
		"Service.LockPersonality":         {"yes"},
		"Install.WantedBy":                {"multi-user.target"},
	}
	for k, v := range want {
		if got := u[k]; strings.Join(got, "\n") != strings.Join(v, "\n") {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// No setting may hand back a capability or a writable system path.
	for _, k := range []string{"Service.ReadWritePaths", "Service.PrivateNetwork", "Service.DynamicUser"} {
		if v, ok := u[k]; ok {
			t.Errorf("%s=%v: not expected in hearth's unit", k, v)
		}
	}
}

// The unit in the package (nfpm.yaml ships templates/hearth.service) and
// the one embedded in the binary are the same file; this pins the path in
// nfpm.yaml so a rename cannot leave the package without a unit.
func TestUnitIsWhatThePackageShips(t *testing.T) {
	nfpm, err := os.ReadFile("../nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(nfpm, []byte("src: templates/hearth.service\n    dst: "+UnitPath+"\n")) {
		t.Errorf("nfpm.yaml does not install templates/hearth.service at %s", UnitPath)
	}
	disk, err := os.ReadFile("hearth.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk, Unit()) {
		t.Error("embedded unit differs from templates/hearth.service")
	}
}
