// Package nginxtest runs a real nginx as a child process of the test, on
// 127.0.0.1 high ports with its own prefix directory: never the system
// service, never the host's configuration.
package nginxtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Nginx is a running test nginx. Conf.d holds the vhost files; Reload
// makes it read them again.
type Nginx struct {
	Bin    string
	Prefix string
	ConfD  string
	Conf   string // the top-level nginx.conf
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

// Binary finds nginx or skips the test (CI installs it; see .ci/run).
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/nginx", "/usr/bin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is not installed (apt-get install nginx)")
	}
	t.Skip("nginx is not installed (apt-get install nginx)")
	return ""
}

// FreePorts returns n TCP ports free on 127.0.0.1 right now.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// New prepares a prefix directory with a top-level configuration that
// includes conf.d/*.conf inside http{}; it does not start nginx.
func New(t testing.TB) *Nginx {
	t.Helper()
	return NewAt(t, t.TempDir())
}

// NewAt is New with the prefix (configuration) directory given, e.g. a
// fake host's /etc/nginx.
func NewAt(t testing.TB, prefix string) *Nginx {
	t.Helper()
	bin := Binary(t)
	n := &Nginx{Bin: bin, Prefix: prefix, ConfD: filepath.Join(prefix, "conf.d"), Conf: filepath.Join(prefix, "nginx.conf")}
	for _, d := range []string{"conf.d", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody and could not use the temp dirs.
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    include %[2]s/conf.d/*.conf;
}
`, user, prefix)
	if err := os.WriteFile(n.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// Args are the flags that point nginx at this prefix; -e keeps the
// startup log away from /var/log/nginx.
func (n *Nginx) Args(extra ...string) []string {
	return append([]string{"-p", n.Prefix, "-c", n.Conf, "-e", filepath.Join(n.Prefix, "logs", "error.log")}, extra...)
}

// Start runs nginx in the foreground as a child and waits until addr
// accepts connections.
func (n *Nginx) Start(t testing.TB, addr string) {
	t.Helper()
	n.stderr = &bytes.Buffer{}
	n.cmd = exec.Command(n.Bin, n.Args("-g", "daemon off;")...)
	n.cmd.Stdout, n.cmd.Stderr = n.stderr, n.stderr
	// A test that panics (timeout) runs no cleanup: the kernel stops nginx
	// with it.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- n.cmd.Wait() }()
	t.Cleanup(func() {
		// Our own child, by PID: QUIT lets workers finish.
		_ = n.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v\n%s\n%s", err, n.stderr, n.ErrorLog())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %v\n%s", addr, err, n.ErrorLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PID is the master process's id.
func (n *Nginx) PID() int { return n.cmd.Process.Pid }

// Reload asks the master to re-read its configuration (SIGHUP), as
// `systemctl reload nginx` does.
func (n *Nginx) Reload() error { return n.cmd.Process.Signal(syscall.SIGHUP) }

// ErrorLog returns nginx's error log, for failure messages.
func (n *Nginx) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Prefix, "logs", "error.log"))
	return string(b)
}

// Listen builds "127.0.0.1:PORT" for templates.
func Listen(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// TestCommand is the `nginx -t` argv for this prefix.
func (n *Nginx) TestCommand() []string {
	return append([]string{n.Bin}, n.Args("-t", "-q")...)
}

// Trim is for error messages.
func Trim(b []byte) string { return strings.TrimSpace(string(b)) }
