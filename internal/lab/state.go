package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Phases of a lab and of a container.
const (
	PhaseCreating = "creating"
	PhaseReady    = "ready"
	PhaseDeleting = "deleting"
	PhaseRunning  = "running"
)

// State is lab.json: everything needed to use and to tear down a lab.
type State struct {
	Plan
	Phase   string       `json:"phase"`
	Created time.Time    `json:"created"`
	Nodes   int          `json:"nodes"`
	NRacks  int          `json:"nracks"`
	Pool    netip.Prefix `json:"pool"`
	// IPFamily is ipv4, ipv6 or dual ("" in labs made before it: ipv4);
	// Pool6 is the IPv6 pool of ipv6 and dual labs.
	IPFamily string       `json:"ipFamily,omitempty"`
	Pool6    netip.Prefix `json:"pool6,omitzero"`
	Encap    string       `json:"encap"`
	BinDir   string       `json:"binDir"`
	DNS      bool         `json:"dns"`
	// AgentArgs are extra arguments of every agent.
	AgentArgs []string `json:"agentArgs,omitempty"`
	// DNSPolicy: agents run the egress-by-name DNS forwarder.
	DNSPolicy bool `json:"dnsPolicy,omitempty"`
	// TLS: the datastore requires TLS and client certificates (tls.go).
	TLS bool `json:"tls,omitempty"`
}

// DatastoreURL is the master's etcd on the fabric (for agents and DNS):
// https:// in a TLS lab.
func (s *State) DatastoreURL() string {
	u := s.Plan.DatastoreURL()
	if s.TLS {
		u = "https://" + strings.TrimPrefix(u, "http://")
	}
	return u
}

// Family is the lab's IP family (ipv4 for labs made before families).
func (s *State) Family() string {
	if s.IPFamily == "" {
		return IPv4
	}
	return s.IPFamily
}

// Pools are the CIDRs of the lab's default pools: IPv4, then IPv6.
func (s *State) Pools() []netip.Prefix {
	var out []netip.Prefix
	if HasIPv4(s.IPFamily) {
		out = append(out, s.Pool)
	}
	if HasIPv6(s.IPFamily) && s.Pool6.IsValid() {
		out = append(out, s.Pool6)
	}
	return out
}

// DatastoreURL6 is the master's etcd on its IPv6 fabric address ("" in
// an IPv4 lab): https:// in a TLS lab.
func (s *State) DatastoreURL6() string {
	u := s.Plan.DatastoreURL6()
	if s.TLS && u != "" {
		u = "https://" + strings.TrimPrefix(u, "http://")
	}
	return u
}

// Container is one container of containers.json.
type Container struct {
	Name        string            `json:"name"`
	Node        string            `json:"node"`
	Namespace   string            `json:"namespace"` // the endpoint's namespace
	Network     string            `json:"network"`
	Labels      map[string]string `json:"labels,omitempty"`
	NetNS       string            `json:"netns"`
	ContainerID string            `json:"containerID"`
	IfName      string            `json:"ifname"`
	IPs         []netip.Prefix    `json:"ips,omitempty"`
	DNS         *DNS              `json:"dns,omitempty"`
	Command     []string          `json:"command"`
	Ports       []PortMapping     `json:"ports,omitempty"`
	NamedPorts  []NamedPort       `json:"namedPorts,omitempty"`
	Phase       string            `json:"phase"`
	Created     time.Time         `json:"created"`
	Mesos       *MarathonTask     `json:"mesos,omitempty"`
}

// DNS is the dns section of a CNI result.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// MarathonTask is what the lab, as Marathon, knows of a container it runs.
type MarathonTask struct {
	App      string `json:"app"`  // /group/app
	TaskID   string `json:"id"`   // group_app.<uuid>
	TaskName string `json:"name"` // app.group
	SlaveID  string `json:"slaveID"`
	// NetworkInfo is the NetworkInfo Mesos sent to CNI (with the request's
	// labels); ContainerStatus reports it back with the IPs.
	NetworkLabels []KeyValue `json:"networkLabels,omitempty"`
}

// KeyValue is a Mesos label.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

// IP is the container's first IPv4 address (or its first address).
func (c *Container) IP() netip.Addr {
	for _, p := range c.IPs {
		if p.Addr().Is4() {
			return p.Addr()
		}
	}
	if len(c.IPs) > 0 {
		return c.IPs[0].Addr()
	}
	return netip.Addr{}
}

// IP6 is the container's first IPv6 address (invalid when it has none).
func (c *Container) IP6() netip.Addr {
	for _, p := range c.IPs {
		if p.Addr().Is6() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// stateDir is the directory of lab name under root.
func stateDir(root, name string) string { return filepath.Join(root, name) }

// Layout of a lab's state directory.
const (
	labFile        = "lab.json"
	containersFile = "containers.json"
	lockFile       = "lock"
	etcdSocket     = "etcd.sock"
)

type layout struct{ dir string }

func (l layout) labJSON() string        { return filepath.Join(l.dir, labFile) }
func (l layout) containersJSON() string { return filepath.Join(l.dir, containersFile) }
func (l layout) lock() string           { return filepath.Join(l.dir, lockFile) }
func (l layout) etcdSock() string       { return filepath.Join(l.dir, etcdSocket) }
func (l layout) node(n string) string   { return filepath.Join(l.dir, n) }
func (l layout) pluginDir() string      { return filepath.Join(l.dir, "cni", "bin") }
func (l layout) cniCache() string       { return filepath.Join(l.dir, "cni", "cache") }
func (l layout) container(c string) string {
	return filepath.Join(l.dir, "containers", c)
}
func (l layout) netConfDir(node string) string   { return filepath.Join(l.dir, node, "net.d") }
func (l layout) mesosConfDir(node string) string { return filepath.Join(l.dir, node, "mesos-net.d") }

// mesosRoot is the host's Mesos CNI isolator root (Mesos:
// /var/run/mesos/isolators/network/cni).
func (l layout) mesosRoot(node string) string { return filepath.Join(l.dir, node, "mesos-cni") }
func (l layout) agentSocket(node string) string {
	return filepath.Join(l.dir, node, "agent.sock")
}

// writeJSON writes v to path atomically (temp file and rename).
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// readState reads lab.json of lab name.
func readState(root, name string) (*State, error) {
	var st State
	if err := readJSON(layout{stateDir(root, name)}.labJSON(), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// readContainers reads containers.json (none yet: empty).
func readContainers(l layout) ([]Container, error) {
	var cs []Container
	err := readJSON(l.containersJSON(), &cs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs, err
}

func writeContainers(l layout, cs []Container) error {
	if cs == nil {
		cs = []Container{}
	}
	return writeJSON(l.containersJSON(), cs)
}

// flock holds an exclusive lock on the lab's lock file until unlock.
type flock struct{ f *os.File }

func lockLab(l layout) (*flock, error) {
	f, err := os.OpenFile(l.lock(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock lab: %w", err)
	}
	if err := flockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", l.lock(), err)
	}
	return &flock{f: f}, nil
}

// flockFile takes an exclusive lock on an open file or directory; it is
// released when the file is closed.
func flockFile(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (l *flock) unlock() {
	if l != nil && l.f != nil {
		_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}
