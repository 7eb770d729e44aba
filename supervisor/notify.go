package supervisor

import (
	"fmt"
	"log/slog"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells systemd (Type=notify) about the service's state. Without
// NOTIFY_SOCKET in the environment every call does nothing, so the same
// binary runs under systemd, in a terminal and in tests.
type Notifier struct {
	Log *slog.Logger
}

func (n Notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && n.Log != nil {
		n.Log.Warn("systemd notification failed", "state", state, "err", err)
	}
}

// Ready reports that every listener is open.
func (n Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Reloading reports a configuration or certificate reload in progress; Ready
// must follow.
func (n Notifier) Reloading() { n.send(daemon.SdNotifyReloading) }

// Stopping reports that shutdown has begun.
func (n Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Status sets the free-form line `systemctl status` shows.
func (n Notifier) Status(format string, args ...any) {
	n.send("STATUS=" + fmt.Sprintf(format, args...))
}
