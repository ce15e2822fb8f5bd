package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// Datastore is `tabby datastore run` (an embedded etcd) in a private
// namespace, reached by everyone through a unix socket.
type Datastore struct {
	URL    string
	Dir    string
	NS     string
	Store  datastore.Store
	Client *datastore.Client
	Proc   *Proc
}

// StartDatastore starts a datastore under env.Tmp and connects to it.
func StartDatastore(ctx context.Context, env *Env) (*Datastore, error) {
	dir := filepath.Join(env.Tmp, "etcd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ns := env.Name("ds")
	if _, err := env.J.Namespace(ns); err != nil {
		return nil, fmt.Errorf("datastore namespace: %w", err)
	}
	url := "unix://" + filepath.Join(env.Tmp, "etcd.sock")
	p, err := env.J.StartProc("datastore", ns, []string{filepath.Join(env.Bin, "tabby"), "datastore", "run",
		"--data-dir", filepath.Join(dir, "data"), "--listen", url, "--log-level", "error"}, filepath.Join(env.Tmp, "datastore.log"))
	if err != nil {
		return nil, err
	}
	d := &Datastore{URL: url, Dir: filepath.Join(dir, "data"), NS: ns, Proc: p}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p.Exited() {
			return nil, fmt.Errorf("datastore exited:\n%s", p.Tail(20))
		}
		if _, err := os.Stat(strings.TrimPrefix(url, "unix://")); err == nil {
			s, err := etcd.New(etcd.Config{Endpoints: []string{url}, DialTimeout: 2 * time.Second})
			if err == nil {
				d.Store, d.Client = s, datastore.NewClient(s)
				env.J.Defer("datastore client", s.Close)
				return d, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("datastore not serving after 60s:\n%s", p.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Apply decodes YAML/JSON resources and creates or replaces each.
func (d *Datastore) Apply(ctx context.Context, doc string) error {
	rs, err := api.Decode([]byte(doc))
	if err != nil {
		return fmt.Errorf("decode resources: %w", err)
	}
	for _, r := range rs {
		if _, _, err := d.Client.Apply(ctx, r); err != nil {
			return fmt.Errorf("apply %s %s: %w", r.KindInfo().Kind, r.GetObjectMeta().Name, err)
		}
	}
	return nil
}

// CreateAll creates many resources with `workers` concurrent writers.
func (d *Datastore) CreateAll(ctx context.Context, rs []api.Resource, workers int) error {
	ch := make(chan api.Resource)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range ch {
				if _, err := d.Client.Create(ctx, r); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("create %s %s: %w", r.KindInfo().Kind, r.GetObjectMeta().Name, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, r := range rs {
		select {
		case ch <- r:
		case <-ctx.Done():
		}
	}
	close(ch)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// Pool is the IPPool document for cidr.
func Pool(name, cidr string, blockSize int, extra string) string {
	return fmt.Sprintf("apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: %s}\nspec: {cidr: %q, blockSize: %d%s}\n", name, cidr, blockSize, extra)
}

// CNIDir makes a CNI bin dir holding the Tabby plugin as tabby and
// tabby-ipam (the runtime finds plugins by type).
func CNIDir(env *Env) (string, error) {
	dir := filepath.Join(env.Tmp, "cni-bin")
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, n := range []string{"tabby", "tabby-ipam"} {
		if err := os.Symlink(filepath.Join(env.Bin, "tabby-cni"), filepath.Join(dir, n)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// Host is a "host": a network namespace with an uplink holding the node IP
// and a `tabby agent` process.
type Host struct {
	Name   string
	NS     string
	NSPath string
	Socket string
	NodeIP netip.Prefix
	Agent  *Proc
	Args   []string
	dir    string
	env    *Env
	ds     *Datastore
}

// AgentHTTP is where a rig host's agent serves its HTTP API, inside the
// host's namespace.
const AgentHTTP = "127.0.0.1:9099"

// StartHost creates a host namespace and starts an agent in it. The
// uplink is one end of a veth pair inside the namespace (this kernel has
// no dummy links), so the host has a source address.
func StartHost(ctx context.Context, env *Env, ds *Datastore, name, nodeIP string, args ...string) (*Host, error) {
	ns := env.Name("h")
	path, err := env.J.Namespace(ns)
	if err != nil {
		return nil, err
	}
	for _, a := range [][]string{
		{"link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"},
		{"addr", "add", nodeIP, "dev", "uplink0"},
		{"link", "set", "uplink0", "up"},
		{"link", "set", "uplink1", "up"},
	} {
		if err := IP(ns, a...); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(env.Tmp, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	h := &Host{Name: name, NS: ns, NSPath: path, Socket: filepath.Join(dir, "agent.sock"), NodeIP: netip.MustParsePrefix(nodeIP),
		Args: args, dir: dir, env: env, ds: ds}
	if err := h.Start(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// Start starts (or restarts) the agent and waits until it answers.
func (h *Host) Start(ctx context.Context) error {
	argv := append([]string{filepath.Join(h.env.Bin, "tabby"), "agent", "--node", h.Name, "--datastore", h.ds.URL,
		"--socket", h.Socket, "--node-ip", h.NodeIP.String(), "--mtu", "1500", "--http-listen", AgentHTTP,
		"--log-level", "info", "--gc-interval", "1h"}, h.Args...)
	_ = os.Remove(h.Socket)
	p, err := h.env.J.StartProc("agent "+h.Name, h.NS, argv, filepath.Join(h.dir, "agent.log"))
	if err != nil {
		return err
	}
	h.Agent = p
	return h.WaitReady(ctx, 90*time.Second)
}

// WaitReady waits until the agent answers CNI STATUS.
func (h *Host) WaitReady(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if h.Agent.Exited() {
			return fmt.Errorf("agent %s exited:\n%s", h.Name, h.Agent.Tail(30))
		}
		if h.Ready() {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("agent %s not ready after %s:\n%s", h.Name, d, h.Agent.Tail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ready reports whether the agent answers CNI STATUS through the plugin.
func (h *Host) Ready() bool {
	if _, err := os.Stat(h.Socket); err != nil {
		return false
	}
	conf, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "ready", "type": "tabby", "agent_socket": h.Socket,
		"ipam": map[string]any{"type": "tabby-ipam"}})
	c := exec.Command(filepath.Join(h.env.Bin, "tabby-cni"))
	c.Env = []string{"CNI_COMMAND=STATUS", "CNI_PATH=" + filepath.Join(h.env.Tmp, "cni-bin")}
	c.Stdin = bytes.NewReader(conf)
	return c.Run() == nil
}

// ConfList is a CNI config list attaching containers through this host's
// agent, with labels for policy selectors.
func (h *Host) ConfList(network string, labels map[string]string) (*libcni.NetworkConfigList, error) {
	return TabbyConfList(network, h.Socket, labels)
}

// TabbyConfList is a config list for the Tabby plugin on socket.
func TabbyConfList(network, socket string, labels map[string]string) (*libcni.NetworkConfigList, error) {
	plugin := map[string]any{"type": "tabby", "agent_socket": socket, "ipam": map[string]any{"type": "tabby-ipam"}}
	if len(labels) > 0 {
		var ls []map[string]string
		for k, v := range labels {
			ls = append(ls, map[string]string{"key": k, "value": v})
		}
		plugin["args"] = map[string]any{"cni": map[string]any{"labels": ls}}
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": network, "plugins": []any{plugin}})
	return libcni.ConfListFromBytes(b)
}

// AgentRSS is the agent's resident memory in MiB.
func (h *Host) AgentRSS() (float64, error) { return RSSMiB(h.Agent.PID()) }

// RSSMiB reads VmRSS of a process in MiB.
func RSSMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// CPUSeconds is the user+system CPU time a process has used.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	var ut, st float64
	fmt.Sscanf(f[11], "%f", &ut)
	fmt.Sscanf(f[12], "%f", &st)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}
