package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/merveilles/hearth/server/admin"
	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

// stdinIsTerminal decides whether "room destroy" may ask for confirmation;
// tests replace it.
// (A character device is not enough: /dev/null is one.)
var stdinIsTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// stringFlag remembers whether it was given, so "--title ”" clears a
// title while no --title leaves it alone.
type stringFlag struct {
	val string
	set bool
}

func (f *stringFlag) String() string     { return f.val }
func (f *stringFlag) Set(s string) error { f.val, f.set = s, true; return nil }

// listFlag collects a repeated flag (--owner a --owner b).
type listFlag []string

func (f *listFlag) String() string     { return strings.Join(*f, ",") }
func (f *listFlag) Set(s string) error { *f = append(*f, s); return nil }

// parseRetention reads "30d", "12h" like the configuration; with
// allowDefault, "default" is 0: the server's room_archive retention.
func parseRetention(s string, allowDefault bool) (time.Duration, error) {
	if allowDefault && strings.EqualFold(strings.TrimSpace(s), "default") {
		return 0, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return 0, usageErr{fmt.Errorf("--retention: %w", err)}
	}
	if d <= 0 {
		hint := ""
		if allowDefault {
			hint = "; --retention default uses the server's"
		}
		return 0, usageErr{fmt.Errorf("--retention %s: a room's archive retention must be positive%s", s, hint)}
	}
	return d, nil
}

// printJSON writes v indented, for scripts.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// retentionText is "30d", "forever", with "(default)" when the room has no
// retention of its own.
func retentionText(st muc.RoomStatus) string {
	s := "forever"
	if st.Retention > 0 {
		s = days(config.Duration(st.Retention))
	}
	if !st.OwnRetention {
		s += " (default)"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printRooms(w io.Writer, rooms []muc.RoomStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JID\tMODE\tMEMBERS-ONLY\tRETENTION\tOCCUPANTS")
	for _, r := range rooms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", r.JID, r.Mode, yesNo(r.MembersOnly), retentionText(r), len(r.Occupants))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rooms) == 0 {
		_, err := fmt.Fprintln(w, "(no rooms)")
		return err
	}
	return nil
}

func printRoom(w io.Writer, st muc.RoomStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", k, v)
	}
	row("JID", st.JID)
	row("Title", st.Title)
	row("Description", st.Description)
	row("Subject", st.Subject)
	row("Created", st.Created.UTC().Format("2006-01-02 15:04 MST"))
	row("Mode", st.Mode)
	row("Members-only", yesNo(st.MembersOnly))
	row("Public", yesNo(st.Public))
	row("Moderated", yesNo(st.Moderated))
	row("Retention", retentionText(st))
	row("Federation", st.Federation)
	occ := fmt.Sprint(len(st.Occupants))
	if len(st.Occupants) > 0 {
		occ += " (" + strings.Join(st.Occupants, ", ") + ")"
	}
	row("Occupants", occ)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Affiliations:")
	return printAffiliations(w, admin.SortedAffiliations(st), "  ")
}

func printAffiliations(w io.Writer, affs []admin.Affiliation, indent string) error {
	if len(affs) == 0 {
		_, err := fmt.Fprintln(w, indent+"(none)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, a := range affs {
		fmt.Fprintf(tw, "%s%s\t%s\n", indent, a.Affiliation, a.JID)
	}
	return tw.Flush()
}

// oneOf returns the single true flag's value out of a pair: nil if neither
// was given, an error if both were.
func oneOf(yes, no *bool, yesName, noName string) (*bool, error) {
	switch {
	case *yes && *no:
		return nil, usageErr{fmt.Errorf("--%s and --%s contradict each other", yesName, noName)}
	case *yes:
		v := true
		return &v, nil
	case *no:
		v := false
		return &v, nil
	}
	return nil, nil
}

func roomCommands() []userCmd {
	return []userCmd{
		{name: "create", args: 1, synopsis: "create NAME --owner USER [--member USER] [--plaintext] [--retention 30d] [--title T] [--json]",
			text: `
Create a room at NAME@rooms.DOMAIN. Rooms are end-to-end encrypted (members-
only, OMEMO) unless --plaintext. At least one owner is required; --owner and
--member may be repeated. Without --retention the room keeps its archive as
long as the server's retention.room_archive says.`,
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				var owners, members listFlag
				fs.Var(&owners, "owner", "`user` who owns the room (repeatable; at least one)")
				fs.Var(&members, "member", "`user` who is a member (repeatable)")
				plaintext := fs.Bool("plaintext", false, "a plaintext room instead of an encrypted one")
				retention := fs.String("retention", "", "how long the room's archive keeps messages (`duration`: 30d, 12h)")
				title := fs.String("title", "", "the room's `title`")
				desc := fs.String("description", "", "the room's `description`")
				asJSON := fs.Bool("json", false, "print the room as JSON")
				return func(c *userCall) error {
					spec := muc.RoomSpec{Name: c.args[0], Title: *title, Description: *desc, Owners: owners, Members: members, Plaintext: *plaintext}
					if len(owners) == 0 {
						return usageErr{errors.New("give at least one --owner USER")}
					}
					if *retention != "" {
						d, err := parseRetention(*retention, false)
						if err != nil {
							return err
						}
						spec.Retention = d
					}
					st, err := c.ops.CreateRoom(c.env.Ctx, admin.CLIActor(), spec)
					if err != nil {
						return admin.RoomErr(err, c.args[0])
					}
					if *asJSON {
						return printJSON(c.env.Stdout, st)
					}
					access := "open"
					if st.MembersOnly {
						access = "members-only"
					}
					fmt.Fprintf(c.env.Stdout, "created %s (%s, %s, retention %s)\n", st.JID, st.Mode, access, retentionText(st))
					return nil
				}
			}},
		{name: "list", synopsis: "list [--json]",
			text: "List rooms: JID, mode (encrypted or plaintext), members-only, archive retention and (when the daemon runs) how many are in it.",
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
				return func(c *userCall) error {
					rooms, err := c.ops.ListRooms(c.env.Ctx)
					if err != nil {
						return err
					}
					if *asJSON {
						if rooms == nil {
							rooms = []muc.RoomStatus{}
						}
						return printJSON(c.env.Stdout, rooms)
					}
					return printRooms(c.env.Stdout, rooms)
				}
			}},
		{name: "audit", synopsis: "audit [--limit N] [--json]",
			text: "Show the audit log, oldest first: who changed what and when (rooms created, made plaintext or encrypted, retention, memberships, destroyed).",
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				limit := fs.Int("limit", 50, "show the newest `N` entries (0: all)")
				asJSON := fs.Bool("json", false, "print a JSON array instead of lines")
				return func(c *userCall) error {
					if *limit < 0 {
						return usageErr{errors.New("--limit must be 0 or more")}
					}
					entries, err := c.ops.Audit(c.env.Ctx, *limit)
					if err != nil {
						return err
					}
					if *asJSON {
						if entries == nil {
							entries = []store.AuditEntry{}
						}
						return printJSON(c.env.Stdout, entries)
					}
					if len(entries) == 0 {
						fmt.Fprintln(c.env.Stdout, "the audit log is empty")
					}
					for _, e := range entries {
						change := e.New
						if e.Old != "" {
							change = e.Old + " -> " + e.New
						}
						fmt.Fprintf(c.env.Stdout, "%s  %-16s %-18s %s  %s\n", e.Time.UTC().Format(time.RFC3339), e.Actor, e.Action, e.Target, change)
					}
					return nil
				}
			}},
		{name: "show", args: 1, synopsis: "show NAME [--json]",
			text: "Show a room's settings, who is in it now and its affiliations (owners, admins, members, banned).",
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				asJSON := fs.Bool("json", false, "print the room as JSON")
				return func(c *userCall) error {
					st, err := c.ops.ShowRoom(c.env.Ctx, c.args[0])
					if err != nil {
						return admin.RoomErr(err, c.args[0])
					}
					if *asJSON {
						return printJSON(c.env.Stdout, st)
					}
					return printRoom(c.env.Stdout, st)
				}
			}},
		{name: "set", args: 1, synopsis: "set NAME [--plaintext|--encrypted] [--retention 30d|default] [--title T] [--public|--hidden] [--open|--members-only] [--moderated|--unmoderated] [--json]",
			text: `
Change a room's settings; what is not given stays. With the daemon running,
those in the room are told at once. Making a room encrypted again also makes
it members-only and removes those present who are not members. An encrypted
room cannot be opened to non-members: make it plaintext first.`,
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				plaintext := fs.Bool("plaintext", false, "messages in clear, archived by the server")
				encrypted := fs.Bool("encrypted", false, "end-to-end encrypted (members-only)")
				retention := fs.String("retention", "", "archive retention (`duration`: 30d, 12h), or \"default\" for the server's")
				var title, desc stringFlag
				fs.Var(&title, "title", "the room's `title` (\"\" clears it)")
				fs.Var(&desc, "description", "the room's `description` (\"\" clears it)")
				public := fs.Bool("public", false, "listed in the room directory")
				hidden := fs.Bool("hidden", false, "not listed in the room directory")
				open := fs.Bool("open", false, "anyone on the server may enter (plaintext rooms only)")
				membersOnly := fs.Bool("members-only", false, "only members may enter")
				moderated := fs.Bool("moderated", false, "only those with voice may speak")
				unmoderated := fs.Bool("unmoderated", false, "everyone present may speak")
				asJSON := fs.Bool("json", false, "print the room as JSON")
				return func(c *userCall) error {
					var ch muc.RoomChange
					var err error
					if ch.Plaintext, err = oneOf(plaintext, encrypted, "plaintext", "encrypted"); err != nil {
						return err
					}
					if ch.Public, err = oneOf(public, hidden, "public", "hidden"); err != nil {
						return err
					}
					if ch.Open, err = oneOf(open, membersOnly, "open", "members-only"); err != nil {
						return err
					}
					if ch.Moderated, err = oneOf(moderated, unmoderated, "moderated", "unmoderated"); err != nil {
						return err
					}
					if *retention != "" {
						d, err := parseRetention(*retention, true)
						if err != nil {
							return err
						}
						ch.Retention = &d
					}
					if title.set {
						ch.Title = &title.val
					}
					if desc.set {
						ch.Description = &desc.val
					}
					if ch == (muc.RoomChange{}) {
						return usageErr{errors.New("nothing to change: give at least one setting")}
					}
					st, err := c.ops.SetRoom(c.env.Ctx, admin.CLIActor(), c.args[0], ch)
					if err != nil {
						return admin.RoomErr(err, c.args[0])
					}
					if *asJSON {
						return printJSON(c.env.Stdout, st)
					}
					fmt.Fprintf(c.env.Stdout, "updated %s\n", st.JID)
					return printRoom(c.env.Stdout, st)
				}
			}},
		{name: "destroy", args: 1, synopsis: "destroy NAME [--alternate ROOM] [--reason TEXT] [--yes] [--json]",
			text: `
Destroy a room with its archive and affiliations. Those in it are removed,
told the reason and, with --alternate, which room to go to instead. On a
terminal it asks first; otherwise --yes is required.`,
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				alternate := fs.String("alternate", "", "`room` to send those present to")
				reason := fs.String("reason", "", "`text` shown to those present")
				yes := fs.Bool("yes", false, "do not ask for confirmation")
				asJSON := fs.Bool("json", false, "print the result as JSON")
				return func(c *userCall) error {
					name := c.args[0]
					st, err := c.ops.ShowRoom(c.env.Ctx, name)
					if err != nil {
						return admin.RoomErr(err, name)
					}
					if !*yes {
						if !stdinIsTerminal(c.env.Stdin) {
							return usageErr{fmt.Errorf("destroying %s cannot be undone: add --yes to confirm when not on a terminal", st.JID)}
						}
						fmt.Fprintf(c.env.Stderr, "Destroy %s with its archive (%d present now)? This cannot be undone. [y/N] ", st.JID, len(st.Occupants))
						line, _ := bufio.NewReader(c.env.Stdin).ReadString('\n')
						if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
							return errors.New("not confirmed; nothing destroyed")
						}
					}
					if err := c.ops.DestroyRoom(c.env.Ctx, admin.CLIActor(), name, *alternate, *reason); err != nil {
						return admin.RoomErr(err, name)
					}
					if *asJSON {
						return printJSON(c.env.Stdout, map[string]any{"jid": st.JID, "destroyed": true, "occupants_removed": len(st.Occupants)})
					}
					fmt.Fprintf(c.env.Stdout, "%s destroyed (%d present removed)\n", st.JID, len(st.Occupants))
					return nil
				}
			}},
		{name: "members", args: 1, synopsis: "members NAME [--add USER [--as member|admin|owner] | --remove USER | --ban USER] [--json]",
			text: `
Without flags, list the room's affiliations: owners, admins, members and the
banned (outcast). --add gives USER an affiliation (member unless --as),
--remove takes it away, --ban bans USER; one change per run. With the daemon
running, someone removed from a members-only room, or banned, leaves it at
once. A room keeps at least one owner.`,
			flags: func(fs *flag.FlagSet) func(*userCall) error {
				add := fs.String("add", "", "`user` to affiliate")
				as := fs.String("as", "member", "`affiliation` for --add: member, admin or owner")
				remove := fs.String("remove", "", "`user` whose affiliation to remove")
				ban := fs.String("ban", "", "`user` to ban")
				asJSON := fs.Bool("json", false, "print the affiliations as a JSON array")
				return func(c *userCall) error {
					var who string
					var aff store.Affiliation
					n := 0
					asGiven := false
					fs.Visit(func(f *flag.Flag) { asGiven = asGiven || f.Name == "as" })
					if *add != "" {
						n++
						who, aff = *add, store.Affiliation(*as)
						if aff != store.AffMember && aff != store.AffAdmin && aff != store.AffOwner {
							return usageErr{fmt.Errorf("--as %q: give member, admin or owner", *as)}
						}
					} else if asGiven {
						return usageErr{errors.New("--as goes with --add")}
					}
					if *remove != "" {
						n++
						who, aff = *remove, store.AffNone
					}
					if *ban != "" {
						n++
						who, aff = *ban, store.AffOutcast
					}
					if n > 1 {
						return usageErr{errors.New("give one of --add, --remove and --ban at a time")}
					}
					name := c.args[0]
					var st muc.RoomStatus
					var err error
					if n == 0 {
						st, err = c.ops.ShowRoom(c.env.Ctx, name)
					} else {
						st, err = c.ops.AffiliateRoom(c.env.Ctx, admin.CLIActor(), name, who, aff)
					}
					if err != nil {
						return admin.RoomErr(err, name)
					}
					affs := admin.SortedAffiliations(st)
					if *asJSON {
						return printJSON(c.env.Stdout, affs)
					}
					switch {
					case n == 0:
					case aff == store.AffNone:
						fmt.Fprintf(c.env.Stdout, "%s: removed %s\n", st.JID, who)
					case aff == store.AffOutcast:
						fmt.Fprintf(c.env.Stdout, "%s: banned %s\n", st.JID, who)
					default:
						fmt.Fprintf(c.env.Stdout, "%s: %s is now %s\n", st.JID, who, aff)
					}
					return printAffiliations(c.env.Stdout, affs, "")
				}
			}},
	}
}
