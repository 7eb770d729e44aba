package nginx

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnitsGolden(t *testing.T) {
	files, err := Units("/var/lib/hearth/tls/fullchain.pem")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || !strings.Contains(string(files[0].Content), "PathChanged=/var/lib/hearth/tls/fullchain.pem\n") {
		t.Fatalf("units: %q", files)
	}
	for _, f := range files {
		golden := filepath.Join("testdata", f.Name)
		if *update {
			if err := os.WriteFile(golden, f.Content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test ./templates/nginx -update creates it)", err)
		}
		if !bytes.Equal(f.Content, want) {
			t.Errorf("%s differs from the rendered template:\n%s", golden, f.Content)
		}
	}
	if _, err := Units("/tmp/x y.pem"); err == nil {
		t.Error("a path with a space was accepted")
	}
}
