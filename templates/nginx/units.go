package nginx

import (
	"bytes"
	"embed"
	"fmt"
	"text/template"
)

//go:embed hearth-certs.path hearth-certs.service
var units embed.FS

// Units renders the systemd path unit (and the service it starts) that
// reloads nginx when the certificate file changes.
func Units(certFile string) ([]File, error) {
	if !safePath().MatchString(certFile) {
		return nil, fmt.Errorf("certificate path %q must be absolute, without spaces or quotes", certFile)
	}
	t, err := template.ParseFS(units, "hearth-certs.*")
	if err != nil {
		return nil, err
	}
	var out []File
	for _, name := range []string{"hearth-certs.path", "hearth-certs.service"} {
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, name, struct{ CertFile string }{certFile}); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, File{Name: name, Content: b.Bytes()})
	}
	return out, nil
}
