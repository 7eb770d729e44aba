package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hearth run with data_volume: required and data_dir a plain directory (a
// volume that failed to mount) refuses to start and writes nothing there.
func TestRunRefusesUnmountedDataVolume(t *testing.T) {
	data := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "hearth.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`domain: chat.example.org
data_dir: %s
data_volume: required
listen:
  addresses: ["127.0.0.1"]
  c2s_port: 0
  tls_port: 0
tls:
  self_signed: true
`, data)), 0o600)
	code, _, errOut := run(t, "", Run, "--config", cfgFile)
	if code != 1 || !strings.Contains(errOut, "is not a mounted volume") || !strings.Contains(errOut, "refusing to start") {
		t.Fatalf("run on an unmounted volume: %d %q", code, errOut)
	}
	if ents, _ := os.ReadDir(data); len(ents) != 0 {
		t.Fatalf("hearth wrote to the bare data directory: %v", ents)
	}
}

// setup and plan document --answers; without root they say how to run
// them and change nothing. (As root the test never runs them: they would
// provision this machine.)
func TestSetupAndPlanHelpAndRoot(t *testing.T) {
	for name, fn := range map[string]func(Env, []string) int{"setup": Setup, "plan": Plan} {
		code, out, _ := run(t, "", fn, "--help")
		if code != 0 || !strings.Contains(out, "Usage:\n  hearth "+name) || !strings.Contains(out, "--answers") {
			t.Errorf("%s --help: %d\n%s", name, code, out)
		}
		if os.Geteuid() == 0 {
			continue
		}
		code, _, errOut := run(t, "", fn)
		if code != 1 || !strings.Contains(errOut, "sudo hearth "+name) {
			t.Errorf("%s as a user: %d %q", name, code, errOut)
		}
	}
}
