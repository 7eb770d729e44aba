package installer

import (
	"context"
	"strings"
	"testing"
)

// The real runner keeps the exit status (blkid's 2 means "empty device",
// findmnt's 1 "not mounted") and puts stderr in the error.
func TestExecRunnerExitCodeAndStderr(t *testing.T) {
	_, err := ExecRunner{}.Run(context.Background(), nil, "sh", "-c", "echo broken >&2; exit 2")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("err %v, exit code %d", err, exitCode(err))
	}
	out, err := ExecRunner{}.Run(context.Background(), []byte("in"), "cat")
	if err != nil || string(out) != "in" {
		t.Fatalf("%q %v", out, err)
	}
}
