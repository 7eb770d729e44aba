package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/retention"
	"github.com/merveilles/hearth/server/store/boltstore"
)

const pruneText = `
Remove messages older than the configured retention from personal archives
(retention.archive, default 180 days), offline queues (retention.offline,
default 30 days) and room archives (each room's own retention as a chat
admin set it, else retention.room_archive, default 90 days), and report
what was removed. With --dry-run nothing is removed: it reports what would
be.

The running daemon prunes once a day by itself. hearth prune opens the
database directly, so it needs the daemon stopped; while the daemon runs it
refuses and says so (stop it, prune, start it again).

The instance is chosen with --data DIR (a "hearth dev" data directory) or
--config FILE (a "hearth run" configuration). Without either, it uses
` + defaultConfig + ` if that exists, else --data hearth-data. A "hearth
dev" instance uses the default retention.`

// Prune runs `hearth prune`.
func Prune(env Env, args []string) int {
	fs := newFlagSet("prune", "hearth prune [--dry-run] [--data DIR | --config FILE]", pruneText)
	var inst instanceFlags
	inst.register(fs, instanceFlags{})
	dry := fs.Bool("dry-run", false, "report what would be removed, remove nothing")
	if code, done := parse(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	cfg, err := inst.load()
	if err != nil {
		return fail(env, "prune", err)
	}
	if _, err := os.Stat(cfg.DBPath()); err != nil {
		return fail(env, "prune", fmt.Errorf("no database at %s: %w", cfg.DBPath(), err))
	}
	st, err := boltstore.Open(cfg.DBPath())
	if errors.Is(err, boltstore.ErrLocked) {
		return fail(env, "prune", fmt.Errorf("the daemon is running and holds %s.\n"+
			"It prunes once a day by itself (retention in its configuration). To prune now,\n"+
			"stop it (systemctl stop hearth, or Ctrl-C for hearth dev), run hearth prune, and start it again", cfg.DBPath()))
	}
	if err != nil {
		return fail(env, "prune", err)
	}
	defer st.Close()
	p := &pruneProgress{w: env.Stderr, tty: env.StderrTTY}
	start := time.Now()
	rep, err := retention.Prune(env.Ctx, st, cfg.Retention, retention.Options{DryRun: *dry, Progress: p.update})
	p.finish()
	if err != nil {
		return fail(env, "prune", err)
	}
	printPruneReport(env.Stdout, rep, cfg.Retention, time.Since(start))
	return ExitOK
}

func printPruneReport(w io.Writer, rep retention.Report, cfg config.Retention, took time.Duration) {
	verb := "removed"
	if rep.DryRun {
		verb = "would remove"
	}
	line := func(what string, disabled bool, keep config.Duration, cutoff time.Time, removed, users, kept int) {
		if disabled {
			fmt.Fprintf(w, "%s: kept forever (retention 0), nothing to prune\n", what)
			return
		}
		fmt.Fprintf(w, "%s: %s %s older than %s (%s) from %s; %s kept\n", what, verb, plural(removed, "message"),
			cutoff.UTC().Format("2006-01-02 15:04 UTC"), days(keep), plural(users, "user"), plural(kept, "message"))
	}
	line("archive", rep.ArchiveDisabled, cfg.Archive, rep.ArchiveCutoff, rep.Archive.Removed, rep.Archive.Users, rep.Archive.Kept)
	line("offline", rep.OfflineDisabled, cfg.Offline, rep.OfflineCutoff, rep.Offline.Removed, rep.Offline.Users, rep.Offline.Kept)
	if !rep.NoRooms {
		def := "kept forever"
		if rep.RoomsDefault > 0 {
			def = days(config.Duration(rep.RoomsDefault))
		}
		fmt.Fprintf(w, "rooms: %s %s older than each room's retention (default %s) from %s; %s kept\n", verb,
			plural(rep.Rooms.Removed, "message"), def, plural(rep.Rooms.Users, "room"), plural(rep.Rooms.Kept, "message"))
	}
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing was removed")
	}
	fmt.Fprintf(w, "took %s\n", took.Round(time.Millisecond))
}

func days(d config.Duration) string {
	if d.D()%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d.D()/(24*time.Hour))
	}
	return d.D().String()
}

// pruneProgress shows users (or rooms) done on standard error: redrawn in place on a
// terminal, otherwise a line every few seconds, so small stores print
// nothing extra.
type pruneProgress struct {
	w     io.Writer
	tty   bool
	last  time.Time
	shown bool
}

func (p *pruneProgress) update(what string, done, total, removed int) {
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if p.last.IsZero() {
		p.last = now
		return
	}
	if now.Sub(p.last) < every && done != total {
		return
	}
	if !p.shown && done == total {
		return // finished before the first update was due
	}
	p.last, p.shown = now, true
	unit := "users"
	if what == "rooms" {
		unit = "rooms"
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s: %d/%d %s, %d messages so far   ", what, done, total, unit, removed)
	} else {
		fmt.Fprintf(p.w, "%s: %d/%d %s, %d messages so far\n", what, done, total, unit, removed)
	}
}

func (p *pruneProgress) finish() {
	if p.tty && p.shown {
		fmt.Fprintln(p.w)
	}
}
