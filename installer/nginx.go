package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/merveilles/hearth/templates/nginx"
)

// Nginx is the nginx step: hearth's vhosts in conf.d, validated as a whole
// configuration before they replace the old ones, then a reload that is
// confirmed by asking nginx which configuration it serves. Any failure
// puts the old files back.
type Nginx struct {
	Params nginx.Params
	// Dir is nginx's configuration directory (/etc/nginx); Conf its main
	// file (Dir/nginx.conf); ConfD where the vhosts go (Dir/conf.d).
	Dir, Conf, ConfD string
	// Binary runs "nginx -t" (default "nginx"); TestArgs are added to it
	// (tests point the error log away from /var/log/nginx).
	Binary   string
	TestArgs []string
	// Reload makes the running nginx read its configuration (default
	// systemctl reload nginx).
	Reload []string
	// Probe is the port-80 address asked for the serving configuration's
	// serial (default 127.0.0.1:80); Wait bounds how long (default 30s).
	Probe string
	Wait  time.Duration
}

// Name implements Step.
func (Nginx) Name() string { return "nginx" }

func (s Nginx) withDefaults() Nginx {
	if s.Dir == "" {
		s.Dir = "/etc/nginx"
	}
	if s.Conf == "" {
		s.Conf = filepath.Join(s.Dir, "nginx.conf")
	}
	if s.ConfD == "" {
		s.ConfD = filepath.Join(s.Dir, "conf.d")
	}
	if s.Binary == "" {
		s.Binary = "nginx"
	}
	if len(s.Reload) == 0 {
		s.Reload = []string{"systemctl", "reload", "nginx"}
	}
	if s.Probe == "" {
		s.Probe = "127.0.0.1:80"
	}
	if s.Wait == 0 {
		s.Wait = 30 * time.Second
	}
	return s
}

func (s Nginx) files() ([]File, string, error) {
	rendered, err := nginx.Render(s.Params)
	if err != nil {
		return nil, "", err
	}
	var out []File
	for _, f := range rendered {
		out = append(out, File{Path: filepath.Join(s.ConfD, f.Name), Content: f.Content, Mode: 0o644})
	}
	return out, nginx.Serial(rendered), nil
}

// Plan implements Step. Files already right need nothing (at most their
// hash recorded); otherwise one action writes them all and reloads, so
// nginx never runs with half of a change.
func (s Nginx) Plan(ctx context.Context, h *Host) ([]Action, error) {
	s = s.withDefaults()
	if !h.Exists(s.Conf) {
		return nil, fmt.Errorf("%s not found: install nginx first (apt install nginx)", s.Conf)
	}
	files, serial, err := s.files()
	if err != nil {
		return nil, err
	}
	var keep []Action
	var change []Action
	for _, f := range files {
		acts, err := h.FileActions(f)
		if err != nil {
			return nil, err
		}
		for _, a := range acts {
			if strings.HasPrefix(a.Summary, "create ") || strings.HasPrefix(a.Summary, "update ") {
				change = append(change, a)
			} else {
				keep = append(keep, a)
			}
		}
	}
	if len(change) == 0 {
		return keep, nil
	}
	var detail strings.Builder
	var blocked []string
	for _, a := range change {
		fmt.Fprintf(&detail, "%s\n", a.Summary)
		for _, line := range strings.Split(strings.TrimRight(a.Detail, "\n"), "\n") {
			fmt.Fprintf(&detail, "  %s\n", line)
		}
		if a.Blocked != "" {
			blocked = append(blocked, a.Blocked)
		}
	}
	return []Action{{
		Summary: fmt.Sprintf("write %d nginx vhost files in %s, check with nginx -t, reload nginx", len(files), s.ConfD),
		Detail:  detail.String(),
		Blocked: strings.Join(blocked, "; "),
		Do: func(ctx context.Context, h *Host) error {
			return s.apply(ctx, h, files, serial)
		},
	}}, nil
}

func (s Nginx) apply(ctx context.Context, h *Host, files []File, serial string) error {
	if err := s.check(ctx, h, files); err != nil {
		return err
	}
	type saved struct {
		content []byte
		existed bool
	}
	old := map[string]saved{}
	for _, f := range files {
		b, ok, err := h.ReadFile(f.Path)
		if err != nil {
			return err
		}
		old[f.Path] = saved{b, ok}
	}
	rollback := func(cause error) error {
		var errs []error
		for _, f := range files {
			o := old[f.Path]
			if o.existed {
				errs = append(errs, h.writeAtomic(f.Path, o.content, 0o644, nil))
			} else if err := os.Remove(h.Path(f.Path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("%w; putting the old vhosts back also failed: %v", cause, err)
		}
		if _, err := h.Cmd(ctx, s.Reload[0], s.Reload[1:]...); err != nil {
			return fmt.Errorf("%w; the old vhosts are back on disk, but reloading nginx with them failed too: %v", cause, err)
		}
		return fmt.Errorf("%w (the old vhosts are back)", cause)
	}
	for _, f := range files {
		if err := h.writeAtomic(f.Path, f.Content, f.Mode, nil); err != nil {
			return rollback(err)
		}
	}
	if _, err := h.Cmd(ctx, s.Reload[0], s.Reload[1:]...); err != nil {
		return rollback(fmt.Errorf("reload nginx: %w", err))
	}
	// systemctl reload returns before the new workers serve: an ACME
	// challenge right after could still meet the old configuration.
	if err := s.waitServing(ctx, h, serial); err != nil {
		return rollback(err)
	}
	return h.UpdateState(func(st *State) {
		for _, f := range files {
			st.Files[f.Path] = Hash(f.Content)
		}
	})
}

// check runs nginx -t on a copy of the whole configuration directory with
// the new vhosts in it, so the live files change only once nginx accepts
// them all.
func (s Nginx) check(ctx context.Context, h *Host, files []File) error {
	live := h.Path(s.Dir)
	cand, err := os.MkdirTemp(filepath.Dir(live), ".nginx-hearth-candidate-")
	if err != nil {
		return fmt.Errorf("nginx candidate: %w", err)
	}
	defer os.RemoveAll(cand)
	if err := copyTree(live, cand, live+"/", cand+"/"); err != nil {
		return fmt.Errorf("nginx candidate: %w", err)
	}
	for _, f := range files {
		rel, err := filepath.Rel(s.Dir, f.Path)
		if err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("nginx vhost %s is outside %s", f.Path, s.Dir)
		}
		if err := os.WriteFile(filepath.Join(cand, rel), f.Content, 0o644); err != nil {
			return fmt.Errorf("nginx candidate: %w", err)
		}
	}
	relConf, err := filepath.Rel(s.Dir, s.Conf)
	if err != nil {
		return err
	}
	args := append([]string{"-t", "-q"}, s.TestArgs...)
	args = append(args, "-c", filepath.Join(cand, relConf))
	if _, err := h.Cmd(ctx, s.Binary, args...); err != nil {
		return fmt.Errorf("nginx rejects the new vhosts (nothing changed): %w", err)
	}
	return nil
}

// copyTree copies a configuration directory, rewriting references to the
// old location in regular files so that includes read the copy.
func copyTree(src, dst, from, to string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			// sites-enabled links: follow them and copy what they point at,
			// rewritten like the rest.
			b, err := os.ReadFile(p)
			if err != nil {
				return nil // a dangling link: nginx -t will say so on the live tree too
			}
			return os.WriteFile(target, []byte(strings.ReplaceAll(string(b), from, to)), 0o644)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, []byte(strings.ReplaceAll(string(b), from, to)), 0o644)
		}
		return nil
	})
}

func (s Nginx) waitServing(ctx context.Context, h *Host, serial string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Probe)
		},
		DisableKeepAlives: true,
	}}
	deadline := time.Now().Add(s.Wait)
	last := ""
	// Old workers keep accepting on the shared sockets until they notice
	// the reload, so one new answer is not enough: ask on fresh
	// connections until several in a row come from the new configuration.
	const inARow = 5
	good := 0
	for {
		got, err := probeSerial(ctx, client, s.Params.Domain)
		if err == nil && got == serial {
			if good++; good == inARow {
				return nil
			}
		} else {
			good = 0
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("it still serves %q", got)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx did not start serving the new configuration within %s: %s", s.Wait, last)
		}
		if err := h.sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func probeSerial(ctx context.Context, c *http.Client, domain string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+domain+"/.well-known/hearth-nginx", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answers %s", resp.Request.URL, resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

// nginxStep is the nginx step for setup's answers: hearth's HTTP port
// (config default 5280) behind the vhosts.
func nginxStep(a *Answers) Nginx {
	a.withDefaults()
	limit := int64(a.UploadLimitMB) << 20
	if limit <= 0 {
		limit = 100 << 20
	}
	return Nginx{Params: nginx.Params{
		Domain:      a.Domain,
		ShareDomain: a.ShareDomain,
		RoomsDomain: a.RoomsDomain,
		Upstream:    "127.0.0.1:5280",
		CertFile:    CertFile,
		KeyFile:     KeyFile,
		UploadLimit: limit,
	}}
}
