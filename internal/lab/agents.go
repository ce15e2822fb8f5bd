package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// DNSPolicyPort is where a lab agent's DNS forwarder listens (Config.DNSPolicy).
const DNSPolicyPort = 1053

// DefaultNetwork is the CNI network every host has from the start.
const DefaultNetwork = "tabby"

// CNI versions the lab's configurations use: a containerd-style conflist
// and the config Mesos is given (DC/OS's calico.conf delegate is 0.1.0).
const (
	ConfListVersion = "1.1.0"
	MesosCNIVersion = "0.1.0"
)

// writeCNISetup makes the plugin directory (tabby and tabby-ipam, both
// the tabby-cni binary, as Calico installs calico and calico-ipam) and
// every host's config for the default network.
func (l *Lab) writeCNISetup() error {
	dir := l.l.pluginDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(l.l.cniCache(), 0o755); err != nil {
		return err
	}
	for _, t := range []string{"tabby", "tabby-ipam"} {
		if err := os.Symlink(filepath.Join(l.st.BinDir, TabbyCNIBinary), filepath.Join(dir, t)); err != nil {
			return fmt.Errorf("install the CNI plugin: %w", err)
		}
	}
	for _, n := range l.st.AgentNodes() {
		if err := l.ensureNetwork(n, DefaultNetwork); err != nil {
			return err
		}
	}
	return nil
}

// pluginConf is the tabby plugin's configuration on host h.
func (l *Lab) pluginConf(h Node) map[string]any {
	c := map[string]any{
		"type":         "tabby",
		"agent_socket": l.l.agentSocket(h.Name),
		"ipam":         map[string]any{"type": "tabby-ipam"},
		// The runtime passes port mappings (runtimeConfig.portMappings)
		// only to plugins that declare the capability.
		"capabilities": map[string]bool{"portMappings": true},
	}
	if l.st.DNS {
		c["dns"] = map[string]any{"nameservers": []string{l.st.Master.IP.Addr().String()}}
	}
	return c
}

func (l *Lab) confListPath(node, network string) string {
	return filepath.Join(l.l.netConfDir(node), "10-"+network+".conflist")
}

func (l *Lab) mesosConfPath(node, network string) string {
	return filepath.Join(l.l.mesosConfDir(node), network+".cni")
}

// ensureNetwork writes host h's configs for network (a conflist for
// CNI runtimes, a 0.1.0 config for Mesos) unless they exist.
func (l *Lab) ensureNetwork(h Node, network string) error {
	return l.writeNetworkConfs(h, network, nil, false)
}

func (l *Lab) agentFile(node, name string) string { return filepath.Join(l.l.node(node), name) }

// startAgents starts the agents of hosts and waits until each answers a
// CNI STATUS through the plugin.
func (l *Lab) startAgents(ctx context.Context, hosts []Node) error {
	for _, h := range hosts {
		if err := l.spawnAgent(h); err != nil {
			return err
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.waitAgent(ctx, h); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Lab) spawnAgent(h Node) error {
	argv := []string{
		filepath.Join(l.st.BinDir, TabbyBinary), "agent",
		"--node", h.Name,
		"--datastore", l.st.DatastoreURL(),
		"--socket", l.l.agentSocket(h.Name),
		"--node-ip", h.IP.String(),
		"--http-listen", netip.AddrPortFrom(h.IP.Addr(), AgentHTTPPort).String(),
	}
	if h.IP6.IsValid() {
		argv = append(argv, "--node-ipv6", h.IP6.String())
	}
	if l.st.TLS {
		argv = append(argv, l.l.tlsFiles(tlsAgentPrefix+h.Name).TLSArgs()...)
	}
	if l.st.DNSPolicy {
		// The forwarder on the host's own address; containers' DNS to
		// the master is redirected to it, and it asks the master.
		listen := netip.AddrPortFrom(h.IP.Addr(), DNSPolicyPort).String()
		if h.IP6.IsValid() {
			listen += "," + netip.AddrPortFrom(h.IP6.Addr(), DNSPolicyPort).String()
		}
		resolvers := l.st.Master.IP.Addr().String()
		if l.st.Master.IP6.IsValid() {
			resolvers += "," + l.st.Master.IP6.Addr().String()
		}
		argv = append(argv, "--dns-policy-listen", listen,
			"--dns-policy-upstream", netip.AddrPortFrom(l.st.Master.IP.Addr(), 53).String(),
			"--dns-policy-resolver", resolvers)
	}
	argv = append(argv, l.st.AgentArgs...)
	_, err := l.proc.start(procSpec{
		Namespace: h.Namespace,
		Argv:      argv,
		Log:       l.agentFile(h.Name, "agent.log"),
		PidFile:   l.agentFile(h.Name, "agent.pid"),
	})
	if err != nil {
		return fmt.Errorf("start the agent of %s: %w", h.Name, err)
	}
	return nil
}

func (l *Lab) waitAgent(ctx context.Context, h Node) error {
	list, err := libcni.LoadConfList(l.l.netConfDir(h.Name), DefaultNetwork)
	if err != nil {
		return fmt.Errorf("agent of %s: load CNI config: %w", h.Name, err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{l.l.pluginDir()}, l.l.cniCache(), nil)
	return l.waitFor(ctx, "agent of "+h.Name, l.agentFile(h.Name, "agent.pid"), l.agentFile(h.Name, "agent.log"), func(ctx context.Context) error {
		return cni.GetStatusNetworkList(ctx, list)
	})
}

// StartAgent starts the agent of a node (after StopAgent) and waits
// until it serves.
func (l *Lab) StartAgent(ctx context.Context, node string) error {
	h, ok := l.st.Node(node)
	if !ok {
		return l.unknownNode(node)
	}
	if p, err := readPidFile(l.agentFile(h.Name, "agent.pid")); err == nil && p.alive() {
		return fmt.Errorf("lab %s: the agent of %s runs already (pid %d)", l.st.Name, h.Name, p.PID)
	}
	if err := l.spawnAgent(h); err != nil {
		return err
	}
	return l.waitAgent(ctx, h)
}

// StopAgent stops the agent of a node: SIGTERM, or SIGKILL when kill
// is set (what a crash looks like). Its containers keep running.
func (l *Lab) StopAgent(node string, kill bool) error {
	h, ok := l.st.Node(node)
	if !ok {
		return l.unknownNode(node)
	}
	path := l.agentFile(h.Name, "agent.pid")
	p, err := readPidFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if kill && p.alive() {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	if err := p.stop(10 * time.Second); err != nil {
		return fmt.Errorf("stop the agent of %s: %w", h.Name, err)
	}
	return os.Remove(path)
}

func (l *Lab) unknownHost(node string) error {
	return fmt.Errorf("lab %s: no host %q (hosts: %s)", l.st.Name, node, l.hostList())
}

func (l *Lab) unknownNode(node string) error {
	return fmt.Errorf("lab %s: no node %q (nodes: master, %s)", l.st.Name, node, l.hostList())
}

func (l *Lab) hostList() string {
	names := ""
	for i, h := range l.st.Hosts {
		if i > 0 {
			names += ", "
		}
		if i == 8 && len(l.st.Hosts) > 10 {
			names += "… h" + strconv.Itoa(len(l.st.Hosts))
			break
		}
		names += h.Name
	}
	return names
}

// NodeStatus is a node with its agent's process state.
type NodeStatus struct {
	Node
	// PID is the node's agent; Running says whether it runs.
	PID     int  `json:"pid,omitempty"`
	Running bool `json:"running"`
	// Socket is the agent's CNI socket; Log its log file.
	Socket string `json:"socket"`
	Log    string `json:"log"`
}

// Nodes lists the master and the hosts with their agents' state.
func (l *Lab) Nodes() []NodeStatus {
	var out []NodeStatus
	for _, n := range l.st.AgentNodes() {
		s := NodeStatus{Node: n, Socket: l.l.agentSocket(n.Name), Log: l.agentFile(n.Name, "agent.log")}
		if p, err := readPidFile(l.agentFile(n.Name, "agent.pid")); err == nil {
			s.PID = p.PID
			s.Running = p.alive()
		}
		out = append(out, s)
	}
	return out
}
