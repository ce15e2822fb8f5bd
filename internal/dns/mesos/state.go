// Package mesos decodes the Mesos master's /master/state document into the
// few fields DNS discovery reads (the ones Mesos-DNS reads): the leader,
// agents, frameworks and their tasks with statuses, network infos, port
// resources, discovery info and port mappings.
//
// It is pure: standard library only, no I/O. It must not import miekg/dns,
// etcd, netlink or any other Tabby package.
package mesos

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// TaskRunning is the only task state that gets DNS records.
const TaskRunning = "TASK_RUNNING"

// Status labels that carry a container IP (Mesos-DNS IP sources "docker"
// and "mesos", both deprecated in Mesos but still read).
const (
	DockerIPLabel = "Docker.NetworkSettings.IPAddress"
	MesosIPLabel  = "MesosContainerizer.NetworkSettings.IPAddress"
)

// State is the part of /master/state that DNS discovery reads.
type State struct {
	// Leader is the leading master's PID, "master@10.0.0.1:5050".
	Leader     string      `json:"leader"`
	Slaves     []Agent     `json:"slaves"`
	Frameworks []Framework `json:"frameworks"`
}

// Agent is one Mesos agent (a "slave" in the state document).
type Agent struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	PID      string `json:"pid"` // "slave(1)@10.0.1.2:5051"
}

// Framework is one registered framework with its active tasks.
type Framework struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	PID      string `json:"pid"` // "scheduler-…@10.0.0.3:15101"; may be empty (HTTP frameworks)
	Hostname string `json:"hostname"`
	Tasks    []Task `json:"tasks"`
}

// Task is one task of a framework.
type Task struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	FrameworkID string         `json:"framework_id"`
	SlaveID     string         `json:"slave_id"`
	State       string         `json:"state"`
	Statuses    []Status       `json:"statuses"`
	Resources   Resources      `json:"resources"`
	Discovery   *DiscoveryInfo `json:"discovery"`
	Container   *ContainerInfo `json:"container"`
}

// Resources holds the task's port resources, written by Mesos as a range
// list string: "[31000-31001, 31005-31005]".
type Resources struct {
	Ports string `json:"ports"`
}

// Label is a key/value pair.
type Label struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Labels is the protobuf-JSON wrapper {"labels": [...]}.
type Labels struct {
	Labels []Label `json:"labels"`
}

// Status is one task status update.
type Status struct {
	State           string          `json:"state"`
	Timestamp       float64         `json:"timestamp"`
	Labels          []Label         `json:"labels"`
	ContainerStatus ContainerStatus `json:"container_status"`
}

// ContainerStatus carries the container's network infos (with IPs).
type ContainerStatus struct {
	NetworkInfos []NetworkInfo `json:"network_infos"`
}

// NetworkInfo is one container interface.
type NetworkInfo struct {
	Name         string        `json:"name"`
	IPAddresses  []IPAddress   `json:"ip_addresses"`
	IPAddress    string        `json:"ip_address"` // Mesos 0.25 form
	PortMappings []PortMapping `json:"port_mappings"`
	Labels       Labels        `json:"labels"`
}

// IPAddress is one address of a NetworkInfo.
type IPAddress struct {
	Protocol  string `json:"protocol"`
	IPAddress string `json:"ip_address"`
}

// PortMapping maps a host port to a container port.
type PortMapping struct {
	HostPort      uint32 `json:"host_port"`
	ContainerPort uint32 `json:"container_port"`
	Protocol      string `json:"protocol"`
}

// DiscoveryInfo is what the framework says about how to find the task.
type DiscoveryInfo struct {
	Visibility string         `json:"visibility"`
	Name       string         `json:"name"`
	Ports      DiscoveryPorts `json:"ports"`
	Labels     Labels         `json:"labels"`
}

// DiscoveryPorts is the protobuf-JSON wrapper {"ports": [...]}.
type DiscoveryPorts struct {
	Ports []DiscoveryPort `json:"ports"`
}

// DiscoveryPort is one port the task serves.
type DiscoveryPort struct {
	Number   uint32 `json:"number"`
	Protocol string `json:"protocol"`
	Name     string `json:"name"`
	Labels   Labels `json:"labels"`
}

// ContainerInfo is the task's container description.
type ContainerInfo struct {
	Type         string        `json:"type"` // MESOS or DOCKER
	Docker       *DockerInfo   `json:"docker"`
	NetworkInfos []NetworkInfo `json:"network_infos"`
}

// DockerInfo carries Docker bridge port mappings.
type DockerInfo struct {
	Network      string        `json:"network"`
	PortMappings []PortMapping `json:"port_mappings"`
}

// MaxStateSize bounds the document Decode accepts (real DC/OS states reach
// tens of megabytes).
const MaxStateSize = 256 << 20

// Decode parses a /master/state document. JSON syntax errors, wrong field
// types and a missing leader are errors (naming the field); values that
// decode but make no sense (a bad port range, a bad IP) are left for the
// accessors below to report per item, so one odd task does not hide all
// others.
func Decode(data []byte) (*State, error) {
	if len(data) > MaxStateSize {
		return nil, fmt.Errorf("decode Mesos state: document is %d bytes, more than the %d allowed", len(data), MaxStateSize)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode Mesos state: %w", describeJSONError(err))
	}
	if s.Leader == "" {
		return nil, errors.New("decode Mesos state: field leader is empty (the document is not from a leading master)")
	}
	if _, _, err := ParsePID(s.Leader); err != nil {
		return nil, fmt.Errorf("decode Mesos state: field leader: %w", err)
	}
	return &s, nil
}

func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %s: a JSON %s is not a %s", te.Field, te.Value, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err
}

// ParsePID splits a libprocess PID "name@host:port" into host and port.
func ParsePID(pid string) (host string, port uint16, err error) {
	at := strings.LastIndexByte(pid, '@')
	if at < 0 {
		return "", 0, fmt.Errorf("PID %q has no '@'", pid)
	}
	h, p, err := net.SplitHostPort(pid[at+1:])
	if err != nil {
		return "", 0, fmt.Errorf("PID %q: %v", pid, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || h == "" {
		return "", 0, fmt.Errorf("PID %q: bad host or port", pid)
	}
	return h, uint16(n), nil
}

// LeaderAddr returns the leading master's IP and port.
func (s *State) LeaderAddr() (netip.Addr, uint16, error) {
	h, p, err := ParsePID(s.Leader)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("leader %q: host is not an IP address", s.Leader)
	}
	return ip.Unmap(), p, nil
}

// Addr returns the agent's IP and port from its PID (falling back to its
// hostname when that is an IP address).
func (a *Agent) Addr() (netip.Addr, uint16, error) {
	h, p, err := ParsePID(a.PID)
	if err == nil {
		if ip, perr := netip.ParseAddr(h); perr == nil {
			return ip.Unmap(), p, nil
		}
	}
	if ip, perr := netip.ParseAddr(a.Hostname); perr == nil {
		return ip.Unmap(), p, nil
	}
	if err == nil {
		err = fmt.Errorf("PID %q: host is not an IP address", a.PID)
	}
	return netip.Addr{}, 0, fmt.Errorf("agent %s: %w", a.ID, err)
}

// Addr returns the framework scheduler's IP and port (0 when unknown).
func (f *Framework) Addr() (netip.Addr, uint16, bool) {
	if f.PID != "" {
		if h, p, err := ParsePID(f.PID); err == nil {
			if ip, err := netip.ParseAddr(h); err == nil {
				return ip.Unmap(), p, true
			}
		}
	}
	if ip, err := netip.ParseAddr(f.Hostname); err == nil {
		return ip.Unmap(), 0, true
	}
	return netip.Addr{}, 0, false
}

// Ports expands the task's port resources, "[31000-31001, 31005-31005]",
// in order. A malformed list is an error naming the task and the value.
func (t *Task) Ports() ([]uint16, error) {
	s := strings.TrimSpace(t.Resources.Ports)
	if s == "" || s == "[]" {
		return nil, nil
	}
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf("task %s: resources.ports %q is not a range list", t.ID, t.Resources.Ports)
	}
	var out []uint16
	for _, r := range strings.Split(s[1:len(s)-1], ",") {
		lo, hi, ok := strings.Cut(strings.TrimSpace(r), "-")
		a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
		b, err2 := a, error(nil)
		if ok {
			b, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
		}
		if err1 != nil || err2 != nil || a > b {
			return nil, fmt.Errorf("task %s: resources.ports %q: bad range %q", t.ID, t.Resources.Ports, strings.TrimSpace(r))
		}
		if len(out)+int(b-a) >= 1<<16 {
			return nil, fmt.Errorf("task %s: resources.ports %q: more than 65536 ports", t.ID, t.Resources.Ports)
		}
		for p := a; p <= b; p++ {
			out = append(out, uint16(p))
		}
	}
	return out, nil
}

// newestStatus returns the status with the newest timestamp among those
// for which keep is true (the first one on a tie), or nil.
func (t *Task) newestStatus(keep func(*Status) bool) *Status {
	var best *Status
	for i := range t.Statuses {
		s := &t.Statuses[i]
		if keep(s) && (best == nil || s.Timestamp > best.Timestamp) {
			best = s
		}
	}
	return best
}

// RunningStatus is the newest TASK_RUNNING status: where Mesos-DNS reads
// task IPs from (Mesos makes no promise about the order of statuses).
func (t *Task) RunningStatus() *Status {
	return t.newestStatus(func(s *Status) bool { return s.State == TaskRunning })
}

// LatestStatus is the newest status of any state: where DC/OS (dcos-net)
// reads container IPs from.
func (t *Task) LatestStatus() *Status {
	return t.newestStatus(func(*Status) bool { return true })
}

// NetworkInfoIPs returns the IPs of a status's network infos, in order,
// skipping values that are not IP addresses.
func (s *Status) NetworkInfoIPs() []netip.Addr {
	if s == nil {
		return nil
	}
	var out []netip.Addr
	for _, ni := range s.ContainerStatus.NetworkInfos {
		if len(ni.IPAddresses) > 0 {
			for _, a := range ni.IPAddresses {
				out = appendIP(out, a.IPAddress)
			}
		} else {
			out = appendIP(out, ni.IPAddress)
		}
	}
	return out
}

// LabelIPs returns the values of the status's labels with the given key
// that are IP addresses.
func (s *Status) LabelIPs(key string) []netip.Addr {
	if s == nil {
		return nil
	}
	var out []netip.Addr
	for _, l := range s.Labels {
		if l.Key == key {
			out = appendIP(out, l.Value)
		}
	}
	return out
}

func appendIP(out []netip.Addr, s string) []netip.Addr {
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || ip.Zone() != "" {
		return out
	}
	return append(out, ip.Unmap())
}

// HasHostPort says whether any port of the task is exposed on its agent:
// a MESOS (UCR) network port mapping, a Docker bridge port mapping, or a
// discovery port labelled network-scope=host. DC/OS "autoip" names point at
// the agent then.
func (t *Task) HasHostPort() bool {
	var nis []NetworkInfo
	if t.Container != nil {
		nis = t.Container.NetworkInfos
		if t.Container.Docker != nil {
			for _, pm := range t.Container.Docker.PortMappings {
				if pm.HostPort != 0 {
					return true
				}
			}
		}
	}
	if len(nis) == 0 {
		if s := t.LatestStatus(); s != nil {
			nis = s.ContainerStatus.NetworkInfos
		}
	}
	for _, ni := range nis {
		for _, pm := range ni.PortMappings {
			if pm.HostPort != 0 {
				return true
			}
		}
	}
	if t.Discovery != nil {
		for _, p := range t.Discovery.Ports.Ports {
			for _, l := range p.Labels.Labels {
				if l.Key == "network-scope" && l.Value == "host" {
					return true
				}
			}
		}
	}
	return false
}

// SortedAgents returns the agents ordered by ID (for deterministic output).
func (s *State) SortedAgents() []Agent {
	out := append([]Agent(nil), s.Slaves...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
