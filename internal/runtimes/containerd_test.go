package runtimes_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/testenv"
)

// containerdImage is the name the tests import their image as.
const containerdImage = "localhost/tabby-busybox:test"

// Containerd is a private containerd daemon (root, state and socket under
// Dir, the CRI plugin off) in Host's network namespace and in a mount
// namespace of its own, where a tmpfs covers /run (the shims' sockets and
// ctr's fifos) and /opt, /etc/cni/net.d is bound to a private directory and /opt/cni/bin
// holds only the plugin: `ctr run --cni` reads only those fixed paths.
// Every ctr command runs in that mount namespace.
type Containerd struct {
	t    *testing.T
	Dir  string
	Host *agenttest.Host
	pid  int
	ran  ranLog
}

const containerdConf = `version = 2
root = "%[1]s/root"
state = "%[1]s/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "%[1]s/containerd.sock"
`

// NewContainerd starts the daemon for a Tabby network served by h's agent
// and imports the busybox image.
func NewContainerd(t *testing.T, c *agenttest.Cluster, h *agenttest.Host, network string) *Containerd {
	t.Helper()
	testenv.NeedTools(t, "containerd", "ctr", "unshare", "nsenter", "runc")
	if fi, err := os.Stat("/etc/cni/net.d"); err != nil || !fi.IsDir() {
		t.Fatalf("/etc/cni/net.d must exist as a mount point for the private CNI config (Debian's podman package creates it): %v", err)
	}
	dir, err := os.MkdirTemp("", "tabby-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Containerd{t: t, Dir: dir, Host: h}
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(fmt.Sprintf(containerdConf, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-"+network+".conflist"), conflist(network, h.Socket), 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount -t tmpfs tabby-run /run && mount --bind %[1]s/cni /etc/cni/net.d && "+
		"mount -t tmpfs tabby-opt /opt && mkdir -p /opt/cni/bin && "+
		"ln -s %[2]s /opt/cni/bin/tabby && ln -s %[2]s /opt/cni/bin/tabby-ipam && "+
		"exec containerd --config %[1]s/config.toml", dir, filepath.Join(c.Bin, "tabby-cni"))
	cmd := exec.Command("nsenter", "--net="+h.NSPath, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	_ = logf.Close()
	d.pid = cmd.Process.Pid
	t.Cleanup(func() {
		d.removeAll()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Logf("containerd log (tail):\n%s", tailLines(string(b), 30))
		}
		_ = exec.Command("umount", "-R", filepath.Join(dir, "root")).Run()
		_ = os.RemoveAll(dir)
	})
	eventually(t, "containerd serves", func() error { _, err := d.Try("version"); return err })
	d.Run("images", "import", "--snapshotter", "native", dockerArchive(t, dir, containerdImage))
	return d
}

// removeAll kills and deletes every task and container of the daemon (the
// shims are its children's, so nothing outlives the test).
func (d *Containerd) removeAll() {
	out, _ := d.Try("tasks", "ls", "-q")
	for _, id := range strings.Fields(out) {
		_, _ = d.Try("tasks", "kill", "-s", "SIGKILL", id)
	}
	for _, id := range strings.Fields(out) {
		for range 50 {
			if _, err := d.Try("tasks", "delete", id); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	out, _ = d.Try("containers", "ls", "-q")
	for _, id := range strings.Fields(out) {
		_, _ = d.Try("containers", "rm", id)
	}
}

// Try runs ctr with args against the daemon, in its namespaces.
func (d *Containerd) Try(args ...string) (string, error) {
	d.ran.add(args)
	full := append([]string{"-t", strconv.Itoa(d.pid), "-m", "-n", "--", "ctr", "--address", filepath.Join(d.Dir, "containerd.sock")}, args...)
	cmd := exec.Command("nsenter", full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// Run is Try that fails the test on error.
func (d *Containerd) Run(args ...string) string {
	d.t.Helper()
	out, err := d.Try(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// IP is the IPv4 address of eth0 in task id.
func (d *Containerd) IP(id string) string {
	d.t.Helper()
	out := d.Run("tasks", "exec", "--exec-id", "ip"+agenttest.RandName(""), id, "ip", "-4", "-o", "addr", "show", "eth0")
	f := strings.Fields(out)
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			return strings.SplitN(f[i+1], "/", 2)[0]
		}
	}
	d.t.Fatalf("no IPv4 address on eth0 of %s: %q", id, out)
	return ""
}

func tailLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
