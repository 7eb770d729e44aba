package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/merveilles/hearth/server/config"
)

// restartOnly are the settings a running hearth cannot change: they were
// used once at start (the domain is in every stored JID, the ports and the
// admin socket are open, the database file is open, the certificate
// manager and the TLS holder know their files). A reload keeps their old
// values and says that they need a restart. A name ending in "." covers a
// whole section. Everything else is read when used and changes live.
var restartOnly = []string{
	"domain",
	"data_dir",
	"data_volume",
	"listen.",
	"tls.",
	"acme.",
	"admin.",
	"rooms.domain", // the service registers its address at start
}

func needsRestart(field string) bool {
	for _, r := range restartOnly {
		if field == r || (strings.HasSuffix(r, ".") && strings.HasPrefix(field, r)) {
			return true
		}
	}
	return false
}

// merge returns the configuration to run after a reload from old to next:
// next, with every restart-only setting kept from old. It also names the
// settings that change now and those that were left for a restart, by
// their YAML paths (limits.max_roster_items).
func merge(old, next *config.Config) (merged *config.Config, live, restart []string) {
	merged = new(config.Config)
	*merged = *next
	for _, f := range diff(reflect.ValueOf(old).Elem(), reflect.ValueOf(next).Elem(), "") {
		if !needsRestart(f) {
			live = append(live, f)
			continue
		}
		restart = append(restart, f)
		field(reflect.ValueOf(merged).Elem(), f).Set(field(reflect.ValueOf(old).Elem(), f))
	}
	return merged, live, restart
}

// diff lists the YAML paths of the leaf settings that differ between two
// values of one struct type. Slices and maps are leaves, compared whole.
func diff(a, b reflect.Value, prefix string) []string {
	var out []string
	t := a.Type()
	for n := range t.NumField() {
		sf := t.Field(n)
		name := yamlName(sf)
		if name == "" {
			continue
		}
		path := prefix + name
		fa, fb := a.Field(n), b.Field(n)
		if sf.Type.Kind() == reflect.Struct {
			out = append(out, diff(fa, fb, path+".")...)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			out = append(out, path)
		}
	}
	return out
}

// field finds the setting at a YAML path in a config struct value.
func field(v reflect.Value, path string) reflect.Value {
	for _, name := range strings.Split(path, ".") {
		t := v.Type()
		found := false
		for n := range t.NumField() {
			if yamlName(t.Field(n)) == name {
				v, found = v.Field(n), true
				break
			}
		}
		if !found {
			panic("supervisor: no config field " + path)
		}
	}
	return v
}

func yamlName(sf reflect.StructField) string {
	if !sf.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		name = strings.ToLower(sf.Name)
	}
	return name
}

// reloadConfig re-reads and validates the configuration file and applies
// what can change while running. An unreadable or invalid file changes
// nothing: the error says what is wrong and the old configuration stays.
func (i *Instance) reloadConfig(ctx context.Context) error {
	next, err := config.Load(i.ConfigFile)
	if err != nil {
		return err
	}
	old := i.config()
	merged, live, restart := merge(old, next)
	for _, f := range restart {
		i.log.Warn("configuration reload: setting changed but needs a restart; keeping the running value until then",
			"setting", f, "running", field(reflect.ValueOf(old).Elem(), f).Interface(),
			"file", field(reflect.ValueOf(next).Elem(), f).Interface(),
			"hint", "sudo systemctl restart hearth")
	}
	i.apply(ctx, merged)
	if len(live) == 0 {
		i.log.Info("configuration reloaded: nothing changed that applies live", "file", i.ConfigFile)
	} else {
		i.log.Info("configuration reloaded", "file", i.ConfigFile, "changed", strings.Join(live, ","))
	}
	return nil
}

// apply makes cfg the running configuration: the instance's (used when a
// component restarts), the chat service's and the log level.
func (i *Instance) apply(ctx context.Context, cfg *config.Config) {
	i.reloadMu.Lock()
	defer i.reloadMu.Unlock()
	i.cfg.Store(cfg)
	if i.LogLevel != nil {
		i.LogLevel.Set(ParseLevel(cfg.LogLevel))
	}
	if s := i.cur.Load(); s != nil {
		s.XMPP.Reload(ctx, cfg)
	}
}

// ParseLevel turns a validated log_level into a slog level (info if
// unknown).
func ParseLevel(level string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// syncReloaded brings a chat service opened during a reload up to date: it
// may have been built from the configuration just before the swap.
func (i *Instance) syncReloaded(ctx context.Context) {
	i.reloadMu.Lock()
	defer i.reloadMu.Unlock()
	if s := i.cur.Load(); s != nil {
		if cfg := i.config(); s.XMPP.Config() != cfg {
			s.XMPP.Reload(ctx, cfg)
		}
	}
}

// errConfig marks a reload that failed on the configuration file.
type errConfig struct{ err error }

func (e errConfig) Error() string {
	return fmt.Sprintf("configuration not reloaded, still running the previous one: %v", e.err)
}

func (e errConfig) Unwrap() error { return e.err }
