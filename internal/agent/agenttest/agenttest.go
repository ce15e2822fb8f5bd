// Package agenttest runs real Tabby agents for tests: the tabby and
// tabby-cni binaries are built once per test process, each agent is its own
// process inside a private "host" network namespace, the datastore is a
// real embedded etcd reached over a unix socket (so no route into the
// namespace is needed), and containers are attached through tabby-cni via
// libcni, exactly as a runtime does. Tests only; it imports testing.
package agenttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/embedded"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/netns"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds tabby and tabby-cni once per test process and returns
// the directory holding them; its subdirectory cni/ is a CNI bin dir with
// the plugin as tabby and tabby-ipam.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tabby-bin-")
		if buildErr != nil {
			return
		}
		// Tests also run the plugin as an unprivileged user.
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		for _, b := range []struct{ out, pkg string }{{"tabby", "./cmd/tabby"}, {"tabby-cni", "./cmd/tabby-cni"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
		// The runtime finds plugins by type: the CNI bin dir holds the
		// plugin as "tabby" and "tabby-ipam" (the CLI is also named tabby,
		// so it lives one directory up).
		cniDir := filepath.Join(binDir, "cni")
		if buildErr = os.MkdirAll(cniDir, 0o755); buildErr != nil {
			return
		}
		for _, name := range []string{"tabby", "tabby-ipam"} {
			if buildErr = os.Symlink("../tabby-cni", filepath.Join(cniDir, name)); buildErr != nil {
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("agenttest: %v", buildErr)
	}
	return binDir
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// RandName returns prefix plus 6 random hex characters.
func RandName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Cluster is a datastore plus the agents of a test.
type Cluster struct {
	t       testing.TB
	Bin     string
	Etcd    *embedded.Server // Stop and Start it to simulate an outage
	Store   datastore.Store
	Client  *datastore.Client
	EtcdURL string // unix://… reachable from any namespace
	Dir     string
}

// NewCluster starts an embedded etcd on a unix socket and creates the
// default IP pool.
func NewCluster(t testing.TB, pool string) *Cluster {
	t.Helper()
	bin := Binaries(t)
	srv, cfg := etcdtest.NewServerWith(t, etcdtest.Options{Unix: true})
	store, err := etcd.New(cfg)
	if err != nil {
		t.Fatalf("connect to etcd: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	dir, err := os.MkdirTemp("", "tabby-at-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c := &Cluster{t: t, Bin: bin, Etcd: srv, Store: store, Client: datastore.NewClient(store), EtcdURL: cfg.Endpoints[0], Dir: dir}
	if pool != "" {
		c.Apply(&api.IPPool{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.IPPoolSpec{CIDR: pool}})
	}
	return c
}

// Apply writes a resource (create or replace).
func (c *Cluster) Apply(r api.Resource) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.Client.Apply(ctx, r); err != nil {
		c.t.Fatalf("apply %s %q: %v", r.KindInfo().Kind, r.GetObjectMeta().Name, err)
	}
}

// Host is one agent process in its own network namespace.
type Host struct {
	c      *Cluster
	Name   string
	NS     string // namespace name
	NSPath string
	Socket string
	Log    string
	NodeIP netip.Prefix
	Args   []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartHost creates a host namespace and starts an agent in it.
func (c *Cluster) StartHost(name string, nodeIP string, extraArgs ...string) *Host {
	c.t.Helper()
	ns := RandName("tat")
	path, err := netns.Create(ns)
	if err != nil {
		c.t.Fatalf("create host namespace: %v", err)
	}
	c.t.Cleanup(func() { _ = netns.Delete(ns) })
	// The host's uplink: one end of a veth pair holding the node IP (this
	// kernel has no dummy links), so the host has a source address.
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"},
		{"addr", "add", nodeIP, "dev", "uplink0"},
		{"link", "set", "uplink0", "up"},
		{"link", "set", "uplink1", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			c.t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	dir := filepath.Join(c.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	h := &Host{c: c, Name: name, NS: ns, NSPath: path, Socket: filepath.Join(dir, "agent.sock"),
		Log: filepath.Join(dir, "agent.log"), NodeIP: netip.MustParsePrefix(nodeIP), Args: extraArgs}
	c.t.Cleanup(func() {
		h.Stop()
		if c.t.Failed() {
			if b, err := os.ReadFile(h.Log); err == nil {
				c.t.Logf("agent %s log:\n%s", name, tail(b, 60))
			}
		}
	})
	h.Start()
	return h
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Start starts (or restarts) the agent process and waits until it serves.
func (h *Host) Start() {
	h.c.t.Helper()
	logf, err := os.OpenFile(h.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.c.t.Fatal(err)
	}
	args := append([]string{"netns", "exec", h.NS, filepath.Join(h.c.Bin, "tabby"), "agent",
		"--node", h.Name, "--datastore", h.c.EtcdURL, "--socket", h.Socket,
		"--node-ip", h.NodeIP.String(), "--mtu", "1500", "--http-listen", "127.0.0.1:9099",
		"--log-level", "debug", "--gc-interval", "1h"}, h.Args...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		h.c.t.Fatalf("start agent %s: %v", h.Name, err)
	}
	_ = logf.Close()
	h.mu.Lock()
	h.cmd = cmd
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			b, _ := os.ReadFile(h.Log)
			h.c.t.Fatalf("agent %s exited during start:\n%s", h.Name, tail(b, 40))
		default:
		}
		if h.Ready() {
			go func() { <-done }()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(h.Log)
	h.c.t.Fatalf("agent %s not ready after 60s:\n%s", h.Name, tail(b, 40))
}

// Ready reports whether the agent answers CNI STATUS.
func (h *Host) Ready() bool {
	if _, err := os.Stat(h.Socket); err != nil {
		return false
	}
	_, err := h.Exec("STATUS", "", "", "", h.NetConf("readycheck", "1.1.0"))
	return err == nil
}

// Exec runs tabby-cni directly, as a runtime does, and returns its stdout.
func (h *Host) Exec(cmd, cid, nsPath, ifName string, conf []byte) ([]byte, error) {
	c := exec.Command(filepath.Join(h.c.Bin, "tabby-cni"))
	c.Env = []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + cid, "CNI_NETNS=" + nsPath, "CNI_IFNAME=" + ifName, "CNI_PATH=" + h.c.CNIDir()}
	c.Stdin = bytes.NewReader(conf)
	return c.Output()
}

// Kill sends SIGKILL to the agent (as a crash would) and waits for it.
func (h *Host) Kill() { h.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits.
func (h *Host) Stop() { h.signal(syscall.SIGTERM) }

func (h *Host) signal(sig syscall.Signal) {
	h.mu.Lock()
	cmd := h.cmd
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	// The process group is `ip netns exec` and the agent it became.
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// NetConf is a network config for this host's agent.
func (h *Host) NetConf(network, version string) []byte {
	m := map[string]any{"cniVersion": version, "name": network, "type": "tabby", "agent_socket": h.Socket,
		"ipam": map[string]any{"type": "tabby-ipam"}}
	if version == "" {
		delete(m, "cniVersion")
	}
	b, _ := json.Marshal(m)
	return b
}

// ConfList is a libcni config list for this host.
func (h *Host) ConfList(network, version string) *libcni.NetworkConfigList {
	h.c.t.Helper()
	b, _ := json.Marshal(map[string]any{"cniVersion": version, "name": network,
		"plugins": []any{map[string]any{"type": "tabby", "agent_socket": h.Socket, "ipam": map[string]any{"type": "tabby-ipam"}}}})
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		h.c.t.Fatalf("conflist: %v", err)
	}
	return list
}

// CNIDir is the CNI bin dir holding the plugin.
func (c *Cluster) CNIDir() string { return filepath.Join(c.Bin, "cni") }

// CNI returns a libcni client using the built plugins.
func (c *Cluster) CNI() *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{c.CNIDir()}, filepath.Join(c.Dir, "cni-cache"), nil)
}

// Container is a network namespace attached to a host's agent.
type Container struct {
	ID     string
	NS     string
	NSPath string
	IfName string
	Result *types100.Result
	Host   *Host
}

// NewContainerNS creates an empty container namespace.
func (c *Cluster) NewContainerNS() (name, path string) {
	c.t.Helper()
	name = RandName("tac")
	path, err := netns.Create(name)
	if err != nil {
		c.t.Fatalf("create container namespace: %v", err)
	}
	c.t.Cleanup(func() { _ = netns.Delete(name) })
	return name, path
}

// RuntimeConf describes an attachment for libcni.
func RuntimeConf(id, nsPath, ifName string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: nsPath, IfName: ifName}
}

// Attach runs a CNI ADD for a new container on h (current CNI version).
func (h *Host) Attach(network string) *Container {
	h.c.t.Helper()
	name, path := h.c.NewContainerNS()
	id := RandName("cid") + RandName("")
	rt := RuntimeConf(id, path, "eth0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := h.c.CNI().AddNetworkList(ctx, h.ConfList(network, "1.1.0"), rt)
	if err != nil {
		h.c.t.Fatalf("ADD on %s: %v", h.Name, err)
	}
	r, err := types100.GetResult(res)
	if err != nil {
		h.c.t.Fatal(err)
	}
	return &Container{ID: id, NS: name, NSPath: path, IfName: "eth0", Result: r, Host: h}
}

// Detach runs CNI DEL for the container.
func (ct *Container) Detach() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return ct.Host.c.CNI().DelNetworkList(ctx, ct.Host.ConfList("net1", "1.1.0"), RuntimeConf(ct.ID, ct.NSPath, ct.IfName))
}

// IP is the container's first address.
func (ct *Container) IP() netip.Addr {
	a, _ := netip.AddrFromSlice(ct.Result.IPs[0].Address.IP)
	return a.Unmap()
}

// ResultIPs converts any CNI result to its addresses.
func ResultIPs(r types.Result) ([]netip.Addr, error) {
	res, err := types100.GetResult(r)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ip := range res.IPs {
		a, _ := netip.AddrFromSlice(ip.Address.IP)
		out = append(out, a.Unmap())
	}
	return out, nil
}
