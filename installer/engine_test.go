package installer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/installer/installertest"
)

type fileStep struct{ f installer.File }

func (s fileStep) Name() string { return "file" }
func (s fileStep) Plan(ctx context.Context, h *installer.Host) ([]installer.Action, error) {
	return h.FileActions(s.f)
}

func TestManagedFileLifecycle(t *testing.T) {
	ctx := context.Background()
	h, _ := installertest.Host(t, nil)
	step := fileStep{installer.File{Path: "/etc/hearth/x.conf", Content: []byte("a\nb\n"), Mode: 0o640}}
	steps := []installer.Step{step}

	p, err := installer.MakePlan(ctx, h, steps)
	if err != nil {
		t.Fatal(err)
	}
	if p.Empty() || !strings.HasPrefix(p[0].Actions[0].Summary, "create /etc/hearth/x.conf") {
		t.Fatalf("first plan: %+v", p)
	}
	if err := installer.Apply(ctx, h, steps); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(h.Path("/etc/hearth/x.conf"))
	if err != nil || string(got) != "a\nb\n" {
		t.Fatalf("written %q, %v", got, err)
	}
	if fi, _ := os.Stat(h.Path("/etc/hearth/x.conf")); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	if p, _ := installer.MakePlan(ctx, h, steps); !p.Empty() {
		t.Fatalf("second plan not empty: %+v", p)
	}

	// A new rendering updates a file setup wrote, with a diff.
	step.f.Content = []byte("a\nc\n")
	steps = []installer.Step{step}
	p, _ = installer.MakePlan(ctx, h, steps)
	if d := p[0].Actions[0].Detail; d != "-b\n+c" {
		t.Fatalf("diff %q", d)
	}
	if err := installer.Apply(ctx, h, steps); err != nil {
		t.Fatal(err)
	}

	// A hand edit is refused without --force, and nothing is written.
	os.WriteFile(h.Path("/etc/hearth/x.conf"), []byte("mine\n"), 0o640)
	step.f.Content = []byte("theirs\n")
	steps = []installer.Step{step}
	p, _ = installer.MakePlan(ctx, h, steps)
	if len(p.Blocked()) != 1 || !strings.Contains(p.Blocked()[0], "edited by hand") {
		t.Fatalf("blocked: %q", p.Blocked())
	}
	if err := installer.Apply(ctx, h, steps); !errors.Is(err, installer.ErrBlocked) {
		t.Fatalf("apply over hand edit: %v", err)
	}
	if got, _ := os.ReadFile(h.Path("/etc/hearth/x.conf")); string(got) != "mine\n" {
		t.Fatalf("hand edit lost: %q", got)
	}
	h.Force = true
	if err := installer.Apply(ctx, h, steps); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(h.Path("/etc/hearth/x.conf")); string(got) != "theirs\n" {
		t.Fatalf("forced write: %q", got)
	}
}

func TestManagedFileForeignFileRefused(t *testing.T) {
	h, _ := installertest.Host(t, map[string]string{"/etc/x": "old\n"})
	acts, err := h.FileActions(installer.File{Path: "/etc/x", Content: []byte("new\n"), Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || !strings.Contains(acts[0].Blocked, "not written by hearth setup") {
		t.Fatalf("%+v", acts)
	}
}

func TestManagedFileCheckAndVerify(t *testing.T) {
	ctx := context.Background()
	h, _ := installertest.Host(t, nil)
	f := installer.File{Path: "/etc/x", Content: []byte("v1\n"), Mode: 0o644}
	if err := h.WriteManaged(ctx, f); err != nil {
		t.Fatal(err)
	}
	// A candidate that fails its check never replaces the file, and no
	// temporary file is left behind.
	bad := f
	bad.Content = []byte("v2\n")
	bad.Check = func(ctx context.Context, h *installer.Host, candidate string) error {
		b, _ := os.ReadFile(h.Path(candidate))
		if string(b) != "v2\n" || candidate == "/etc/x" {
			t.Errorf("candidate %s holds %q", candidate, b)
		}
		return errors.New("syntax error")
	}
	if err := h.WriteManaged(ctx, bad); err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("check: %v", err)
	}
	// A file rejected after the swap is rolled back.
	bad.Check = nil
	bad.Verify = func(ctx context.Context, h *installer.Host) error { return errors.New("sshd -t failed") }
	if err := h.WriteManaged(ctx, bad); err == nil || !strings.Contains(err.Error(), "old file restored") {
		t.Fatalf("verify: %v", err)
	}
	if b, _ := os.ReadFile(h.Path("/etc/x")); string(b) != "v1\n" {
		t.Fatalf("after rollback: %q", b)
	}
	ents, _ := os.ReadDir(filepath.Dir(h.Path("/etc/x")))
	if len(ents) != 1 {
		t.Fatalf("leftovers in /etc: %v", ents)
	}
	// The recorded hash is still v1's, so the file is not a hand edit.
	if acts, _ := h.FileActions(f); len(acts) != 0 {
		t.Fatalf("plan after rollback: %+v", acts)
	}
}

type failStep struct{ ran *bool }

func (failStep) Name() string { return "broken" }
func (s failStep) Plan(ctx context.Context, h *installer.Host) ([]installer.Action, error) {
	return []installer.Action{{Summary: "fail", Do: func(context.Context, *installer.Host) error { *s.ran = true; return errors.New("boom") }}}, nil
}

func TestApplyStopsAtFirstFailure(t *testing.T) {
	h, _ := installertest.Host(t, nil)
	ran := false
	steps := []installer.Step{failStep{&ran}, fileStep{installer.File{Path: "/etc/later", Content: []byte("x"), Mode: 0o644}}}
	err := installer.Apply(context.Background(), h, steps)
	if err == nil || !strings.Contains(err.Error(), "broken: fail: boom") || !strings.Contains(err.Error(), "later steps not applied") {
		t.Fatalf("err %v", err)
	}
	if !ran || h.Exists("/etc/later") {
		t.Fatal("a later step ran after a failure")
	}
}

func TestDiff(t *testing.T) {
	if d := installer.Diff("a\nb\nc\n", "a\nx\nc\nd\n"); d != "-b\n+x\n+d" {
		t.Fatalf("%q", d)
	}
}
