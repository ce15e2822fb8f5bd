package ctl

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// tabbyBinary builds cmd/tabby into a temporary directory of t (the
// build cache makes every build after the first one quick).
func tabbyBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tabby")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tabbynet/tabby/cmd/tabby").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// daemon is a running `tabby datastore run`.
type daemon struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	done   chan error
}

var readyLine = regexp.MustCompile(`^datastore ready: clients connect to (\S+) \(data in .*\)$`)

// startDatastore runs the binary with args and waits for its ready line.
func startDatastore(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"datastore", "run"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{w: d.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // our own child, by PID
			<-d.done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		d.done <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		m := readyLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("first line: got %q, want %q", line, readyLine)
		}
		d.url = m[1]
	case err := <-d.done:
		d.done <- err
		t.Fatalf("tabby datastore run exited before ready: %v\nstderr:\n%s", err, d.stderr)
	case <-time.After(time.Minute):
		t.Fatalf("tabby datastore run: no ready line within a minute\nstderr:\n%s", d.stderr)
	}
	return d
}

// stop sends SIGTERM and checks a clean exit with status 0.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("tabby datastore run after SIGTERM: %v, want exit status 0\nstderr:\n%s", err, d.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("tabby datastore run still running a minute after SIGTERM")
	}
	if s := d.stderr.String(); strings.Contains(s, "level=ERROR") || strings.Contains(s, "panic") {
		t.Errorf("stderr has errors:\n%s", s)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func connect(t *testing.T, url string) datastore.Store {
	t.Helper()
	s, err := etcd.New(etcd.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestDatastoreRunRestart(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "etcd")
	bin := tabbyBinary(t)
	d := startDatastore(t, bin, "--data-dir", dataDir, "--listen", "http://127.0.0.1:0", "--name", "ctltest")
	if !strings.HasPrefix(d.url, "http://127.0.0.1:") || strings.HasSuffix(d.url, ":0") {
		t.Fatalf("client URL: got %s, want http://127.0.0.1:PORT", d.url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := connect(t, d.url)
	rev, err := s.Create(ctx, "/tabby/v1/test/restart", []byte("kept"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	_ = s.Close()
	d.stop(t)

	// Same data, same address: the key is still there.
	d = startDatastore(t, bin, "--data-dir", dataDir, "--listen", d.url, "--name", "ctltest")
	s = connect(t, d.url)
	kv, err := s.Get(ctx, "/tabby/v1/test/restart")
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if string(kv.Value) != "kept" || kv.Revision != rev {
		t.Errorf("after restart: got %q@%d, want %q@%d", kv.Value, kv.Revision, "kept", rev)
	}
	_ = s.Close()
	d.stop(t)
}

func TestDatastoreRunUnixSocket(t *testing.T) {
	// Socket paths are limited to ~108 bytes: keep it short.
	sockDir, err := os.MkdirTemp("", "tbyds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	url := "unix://" + filepath.Join(sockDir, "etcd.sock")
	d := startDatastore(t, tabbyBinary(t), "--data-dir", filepath.Join(t.TempDir(), "etcd"), "--listen", url)
	if d.url != url {
		t.Errorf("client URL: got %s, want %s", d.url, url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := connect(t, d.url)
	rev, err := s.Create(ctx, "/tabby/v1/test/unix", []byte("1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Update(ctx, "/tabby/v1/test/unix", []byte("2"), rev); err != nil {
		t.Fatalf("Update: %v", err)
	}
	_ = s.Close()
	d.stop(t)
}

func TestDatastoreRunBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no data dir", []string{"datastore", "run"}, "--data-dir is required"},
		{"bad listen scheme", []string{"datastore", "run", "--data-dir", "x", "--listen", "ftp://127.0.0.1:1"}, `listenClient "ftp://127.0.0.1:1"`},
		{"listen host name", []string{"datastore", "run", "--data-dir", "x", "--listen", "http://example.com:2379"}, "must be an IP address"},
		{"https without cert", []string{"datastore", "run", "--data-dir", "x", "--listen", "https://127.0.0.1:2379"}, "needs certFile and keyFile"},
		{"client cert auth without CA", []string{"datastore", "run", "--data-dir", "x", "--client-cert-auth"}, "clientCertAuth: needs trustedCAFile"},
		{"bad cluster state", []string{"datastore", "run", "--data-dir", "x", "--initial-cluster-state", "old"}, `clusterState "old"`},
		{"initial cluster without self", []string{"datastore", "run", "--data-dir", "x", "--name", "a", "--listen-peer", "http://127.0.0.1:2380", "--initial-cluster", "b=http://127.0.0.1:2380"}, `does not list this member "a"`},
		{"bad log level", []string{"datastore", "run", "--data-dir", "x", "--log-level", "loud"}, `--log-level "loud"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code: got %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr.String(), tc.want)
			}
			if strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Errorf("stderr: got %q, want one line", stderr.String())
			}
		})
	}
}
