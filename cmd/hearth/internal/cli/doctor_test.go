package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real command on a broken configuration: exit 2, the finding in JSON,
// and no host command run (the other checks are skipped).
func TestDoctorBadConfigJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.yaml")
	if err := os.WriteFile(path, []byte("domain: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	env := Env{Ctx: context.Background(), Stdout: &out, Stderr: &errb}
	if code := Doctor(env, []string{"--config", path, "--json"}); code != 2 {
		t.Fatalf("exit %d, want 2\n%s%s", code, out.String(), errb.String())
	}
	var rep struct {
		Worst   string `json:"worst"`
		Exit    int    `json:"exit_code"`
		Results []struct {
			Category, Level, Message string
		} `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if rep.Worst != "error" || rep.Exit != 2 || rep.Results[0].Category != "Configuration" || !strings.Contains(rep.Results[0].Message, "domain") {
		t.Errorf("report: %+v", rep)
	}
	out.Reset()
	if code := Doctor(env, []string{"--config", path}); code != 2 || !strings.Contains(out.String(), "FAIL  config:") {
		t.Errorf("text report (exit %d):\n%s", code, out.String())
	}
}
