package templates

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/merveilles/hearth/server/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func render(t *testing.T, p ConfigParams) (string, *config.Config) {
	t.Helper()
	raw, err := Config(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hearth.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the default configuration does not load: %v\n%s", err, raw)
	}
	return string(raw), cfg
}

// The embedded default, once domain and TLS are filled in, loads and
// validates, and says exactly what the code's defaults say.
func TestDefaultConfigLoadsAsTheCodeDefaults(t *testing.T) {
	for _, p := range []ConfigParams{
		{Domain: "chat.example.org", SelfSigned: true},
		{Domain: "chat.example.org", CertFile: "/etc/hearth/tls/fullchain.pem", KeyFile: "/etc/hearth/tls/key.pem"},
	} {
		_, got := render(t, p)
		want := config.Default(p.Domain)
		want.TLS = config.TLS{SelfSigned: p.SelfSigned, CertFile: p.CertFile, KeyFile: p.KeyFile}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("loaded %+v\nwant    %+v", got, want)
		}
	}
}

// Every configuration field appears in the default file, so an operator
// sees every knob; a field added to server/config fails here until the
// template documents it.
func TestDefaultConfigNamesEveryField(t *testing.T) {
	raw, _ := render(t, ConfigParams{Domain: "chat.example.org", SelfSigned: true})
	want, err := yaml.Marshal(config.Default("x"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keys(t, []byte(raw)), keys(t, want); !reflect.DeepEqual(got, want) {
		t.Errorf("template keys:\n  %s\nconfig keys:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func keys(t *testing.T, doc []byte) []string {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind == yaml.DocumentNode {
			walk(prefix, n.Content[0])
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i < len(n.Content); i += 2 {
			k := prefix + n.Content[i].Value
			out = append(out, k)
			walk(k+".", n.Content[i+1])
		}
	}
	walk("", &n)
	sort.Strings(out)
	return out
}

func TestDefaultConfigGolden(t *testing.T) {
	for name, p := range map[string]ConfigParams{
		"hearth-selfsigned.yaml": {Domain: "chat.example.org", SelfSigned: true},
		"hearth-certfiles.yaml":  {Domain: "chat.example.org", CertFile: "/etc/hearth/tls/fullchain.pem", KeyFile: "/etc/hearth/tls/key.pem"},
	} {
		got, _ := render(t, p)
		golden := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./templates -update to create it)", err)
		}
		if !bytes.Equal([]byte(got), want) {
			t.Errorf("%s differs from the rendered template (go test ./templates -update if intended):\n%s", golden, got)
		}
	}
}

// Values are quoted: a hostile or odd value cannot add keys.
func TestConfigValuesCannotInjectYAML(t *testing.T) {
	raw, err := Config(ConfigParams{Domain: "chat.example.org", SelfSigned: true, DataDir: "/srv/x\"\nlog_level: debug"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m["data_dir"] != "/srv/x\"\nlog_level: debug" || m["log_level"] != "info" {
		t.Fatalf("data_dir = %q, log_level = %q", m["data_dir"], m["log_level"])
	}
}

func TestConfigNeedsDomainAndTLS(t *testing.T) {
	if _, err := Config(ConfigParams{SelfSigned: true}); err == nil {
		t.Error("rendered without a domain")
	}
	if _, err := Config(ConfigParams{Domain: "a.example"}); err == nil {
		t.Error("rendered without a certificate or self_signed")
	}
}
