package installer_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/merveilles/hearth/installer"
	"github.com/merveilles/hearth/installer/installertest"
)

const showHearth = "systemctl show -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,StatusText hearth.service"

func TestServiceStartWaitRestart(t *testing.T) {
	h, r := installertest.Host(t, map[string]string{"/etc/hearth/hearth.yaml": "domain: a\n"})
	ctx := context.Background()
	step := installer.Service{Unit: "hearth.service", Config: "/etc/hearth/hearth.yaml"}
	state := "LoadState=loaded\nActiveState=inactive\nSubState=dead\nUnitFileState=disabled\nNeedDaemonReload=yes\n"
	r.OnFunc(showHearth, func([]byte) installertest.Reply { return installertest.Reply{Out: state} })
	acts, err := step.Plan(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"run: systemctl daemon-reload", "run: systemctl enable hearth.service", "run: systemctl start hearth.service, then wait for READY"}
	if got := summaries(acts); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan: %q", got)
	}
	polls := 0
	r.On("systemctl daemon-reload", "")
	r.On("systemctl enable hearth.service", "")
	r.OnFunc("systemctl start hearth.service", func([]byte) installertest.Reply {
		state = "LoadState=loaded\nActiveState=activating\nUnitFileState=enabled\nNeedDaemonReload=no\n"
		return installertest.Reply{}
	})
	r.OnFunc(showHearth, func([]byte) installertest.Reply {
		if strings.Contains(state, "activating") {
			if polls++; polls == 3 {
				state = "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nNeedDaemonReload=no\nStatusText=0 sessions\n"
			}
		}
		return installertest.Reply{Out: state}
	})
	var log strings.Builder
	h.Log = &log
	if err := installer.Apply(ctx, h, []installer.Step{step}); err != nil {
		t.Fatal(err)
	}
	if polls < 3 || !strings.Contains(log.String(), "hearth.service is ready: 0 sessions") {
		t.Fatalf("polls %d, log:\n%s", polls, log.String())
	}
	if acts, err := step.Plan(ctx, h); err != nil || len(acts) != 0 {
		t.Fatalf("second plan: %v %q", err, summaries(acts))
	}
	// A new configuration restarts the running service.
	installertest.WriteFile(t, h.Root, "/etc/hearth/hearth.yaml", "domain: b\n")
	acts, _ = step.Plan(ctx, h)
	if got := summaries(acts); len(got) != 1 || !strings.HasPrefix(got[0], "run: systemctl restart hearth.service") {
		t.Fatalf("plan after config change: %q", got)
	}
}

func TestServiceFailureShowsJournal(t *testing.T) {
	h, r := installertest.Host(t, map[string]string{"/etc/hearth/hearth.yaml": "domain: a\n"})
	r.On(showHearth, "LoadState=loaded\nActiveState=failed\nSubState=failed\nUnitFileState=enabled\n")
	r.On("systemctl start hearth.service", "")
	r.On("journalctl -u hearth.service -n 15 --no-pager -o cat", "hearth run: listen tcp :5222: address already in use\n")
	err := installer.Apply(context.Background(), h, []installer.Step{installer.Service{Unit: "hearth.service", Config: "/etc/hearth/hearth.yaml"}})
	if err == nil || !strings.Contains(err.Error(), "is failed") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("%v", err)
	}
}
