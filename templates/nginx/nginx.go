// Package nginx renders hearth's nginx vhosts from embedded templates: port
// 80 for ACME and redirects, the portal with the websocket and XEP-0156
// host-meta, and the share (upload) subdomain.
package nginx

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/template"
)

//go:embed http.conf portal.conf share.conf tls.conf
var files embed.FS

// Params fill the vhost templates.
type Params struct {
	Domain      string // the chat domain: portal, websocket, host-meta
	ShareDomain string // uploads; default share.DOMAIN
	RoomsDomain string // MUC; only needs port 80 for its certificate
	// Upstream is hearth's HTTP address, e.g. 127.0.0.1:5280.
	Upstream string
	// CertFile and KeyFile are the certificate hearth's ports serve too.
	CertFile, KeyFile string
	// UploadLimit is hearth's upload limit in bytes.
	UploadLimit int64
	// ListenHTTP and ListenHTTPS are nginx listen addresses; the defaults
	// are 80/[::]:80 and 443/[::]:443. Tests use 127.0.0.1:PORT.
	ListenHTTP, ListenHTTPS []string
}

// File is one rendered configuration file.
type File struct {
	Name    string // file name inside nginx's conf.d
	Content []byte
}

// Names are the domain names a certificate for these vhosts must cover.
func (p Params) Names() []string {
	p = p.withDefaults()
	return []string{p.Domain, p.ShareDomain, p.RoomsDomain}
}

func (p Params) withDefaults() Params {
	if p.ShareDomain == "" {
		p.ShareDomain = "share." + p.Domain
	}
	if p.RoomsDomain == "" {
		p.RoomsDomain = "rooms." + p.Domain
	}
	if len(p.ListenHTTP) == 0 {
		p.ListenHTTP = []string{"80", "[::]:80"}
	}
	if len(p.ListenHTTPS) == 0 {
		p.ListenHTTPS = []string{"443", "[::]:443"}
	}
	return p
}

// Everything that reaches the configuration text is checked against these,
// so no value can add a directive. They are compiled on first use: the
// label repetition makes ~100 KiB of program that the running chat server,
// which links this package but never renders nginx files, should not hold.
var (
	hostname = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	})
	safePath = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/[A-Za-z0-9._/@+-]+$`) })
	listenRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(\d{1,5}|[0-9.]+:\d{1,5}|\[[0-9a-fA-F:.]+\]:\d{1,5})$`)
	})
)

func (p Params) validate() error {
	var errs []error
	for what, name := range map[string]string{"domain": p.Domain, "share domain": p.ShareDomain, "rooms domain": p.RoomsDomain} {
		if !hostname().MatchString(name) {
			errs = append(errs, fmt.Errorf("%s %q is not a lower-case host name", what, name))
		}
	}
	if host, port, err := net.SplitHostPort(p.Upstream); err != nil || net.ParseIP(host) == nil || port == "" {
		errs = append(errs, fmt.Errorf("upstream %q is not IP:PORT", p.Upstream))
	}
	for what, f := range map[string]string{"certificate": p.CertFile, "key": p.KeyFile} {
		if !safePath().MatchString(f) {
			errs = append(errs, fmt.Errorf("%s path %q must be absolute, without spaces or quotes", what, f))
		}
	}
	if p.UploadLimit <= 0 {
		errs = append(errs, fmt.Errorf("upload limit %d must be positive", p.UploadLimit))
	}
	for _, l := range append(append([]string{}, p.ListenHTTP...), p.ListenHTTPS...) {
		if !listenRe().MatchString(l) {
			errs = append(errs, fmt.Errorf("listen address %q is not PORT, IP:PORT or [IPv6]:PORT", l))
		}
	}
	return errors.Join(errs...)
}

// view is what the templates see.
type view struct {
	Params
	UploadLimit     string
	HTTPSPortSuffix string
	Serial          string
}

// Render returns the vhost files, sorted by name. Each file carries a
// serial (a hash of all of them) that the port-80 server answers on
// /.well-known/hearth-nginx, so a caller can tell when a reload took effect.
func Render(p Params) ([]File, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("nginx templates: %w", err)
	}
	t, err := template.ParseFS(files, "*.conf")
	if err != nil {
		return nil, fmt.Errorf("nginx templates: %w", err)
	}
	v := view{Params: p, UploadLimit: sizeDirective(p.UploadLimit), HTTPSPortSuffix: portSuffix(p.ListenHTTPS[0])}
	render := func() ([]File, error) {
		out := []File{
			{Name: "hearth-http.conf"},
			{Name: "hearth-" + p.Domain + ".conf"},
			{Name: "hearth-" + p.ShareDomain + ".conf"},
		}
		for i, tmpl := range []string{"http.conf", "portal.conf", "share.conf"} {
			var b bytes.Buffer
			if err := t.ExecuteTemplate(&b, tmpl, v); err != nil {
				return nil, fmt.Errorf("nginx templates: %s: %w", tmpl, err)
			}
			out[i].Content = b.Bytes()
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil
	}
	first, err := render()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, f := range first {
		fmt.Fprintf(h, "%s\x00%s\x00", f.Name, f.Content)
	}
	v.Serial = "hearth-" + hex.EncodeToString(h.Sum(nil))[:16]
	return render()
}

// Serial returns the serial Render put into files, or "".
func Serial(files []File) string {
	for _, f := range files {
		if _, rest, ok := bytes.Cut(f.Content, []byte(`return 200 "hearth-`)); ok {
			if s, _, ok := bytes.Cut(rest, []byte(`\n"`)); ok {
				return "hearth-" + string(s)
			}
		}
	}
	return ""
}

// sizeDirective writes bytes in nginx's size syntax, rounded up to whole
// kilobytes so nginx never refuses a file hearth would accept.
func sizeDirective(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "m"
	default:
		return strconv.FormatInt((n+1023)>>10, 10) + "k"
	}
}

func portSuffix(listen string) string {
	port := listen
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		port = listen[i+1:]
	}
	if port == "443" {
		return ""
	}
	return ":" + port
}
