package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// Mesos task states the lab reports.
const (
	TaskRunning = "TASK_RUNNING"
	TaskFailed  = "TASK_FAILED"
)

// MesosVersion is the Mesos version the state server claims.
const MesosVersion = "1.4.0"

// MasterState is the part of a Mesos master's /master/state the lab
// serves: what Mesos-DNS, dcos-net and `dcos node` read
// (reference/dcos-mesos.md §3).
type MasterState struct {
	Version                string            `json:"version"`
	ID                     string            `json:"id"`
	PID                    string            `json:"pid"`
	Hostname               string            `json:"hostname"`
	Leader                 string            `json:"leader"`
	LeaderInfo             MasterInfo        `json:"leader_info"`
	StartTime              float64           `json:"start_time"`
	ElectedTime            float64           `json:"elected_time"`
	ActivatedSlaves        int               `json:"activated_slaves"`
	Slaves                 []MasterSlave     `json:"slaves"`
	Frameworks             []MasterFramework `json:"frameworks"`
	CompletedFrameworks    []MasterFramework `json:"completed_frameworks"`
	OrphanTasks            []MasterTask      `json:"orphan_tasks"`
	UnregisteredFrameworks []string          `json:"unregistered_frameworks"`
}

// MasterInfo describes the leading master.
type MasterInfo struct {
	ID       string  `json:"id"`
	PID      string  `json:"pid"`
	Port     int     `json:"port"`
	Hostname string  `json:"hostname"`
	Address  Address `json:"address"`
}

// Address is a Mesos Address.
type Address struct {
	Hostname string `json:"hostname"`
	IP       string `json:"ip"`
	Port     int    `json:"port"`
}

// MasterSlave is one agent.
type MasterSlave struct {
	ID             string            `json:"id"`
	Hostname       string            `json:"hostname"`
	PID            string            `json:"pid"` // slave(1)@IP:5051
	Port           int               `json:"port"`
	Active         bool              `json:"active"`
	RegisteredTime float64           `json:"registered_time"`
	Attributes     map[string]string `json:"attributes"`
	Resources      Resources         `json:"resources"`
}

// Resources of an agent or a task.
type Resources struct {
	CPUs  float64 `json:"cpus"`
	Mem   float64 `json:"mem"`
	Disk  float64 `json:"disk"`
	GPUs  float64 `json:"gpus"`
	Ports string  `json:"ports,omitempty"`
}

// MasterFramework is one framework with its tasks.
type MasterFramework struct {
	ID             string       `json:"id"`
	Name           string       `json:"name"`
	PID            string       `json:"pid"`
	Hostname       string       `json:"hostname"`
	Active         bool         `json:"active"`
	Role           string       `json:"role"`
	WebuiURL       string       `json:"webui_url"`
	Tasks          []MasterTask `json:"tasks"`
	CompletedTasks []MasterTask `json:"completed_tasks"`
}

// MasterTask is one task.
type MasterTask struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	FrameworkID string         `json:"framework_id"`
	ExecutorID  string         `json:"executor_id"`
	SlaveID     string         `json:"slave_id"`
	State       string         `json:"state"`
	Role        string         `json:"role"`
	Resources   Resources      `json:"resources"`
	Statuses    []TaskStatus   `json:"statuses"`
	Discovery   *DiscoveryInfo `json:"discovery,omitempty"`
	Container   *ContainerInfo `json:"container,omitempty"`
}

// TaskStatus is one status update of a task.
type TaskStatus struct {
	State           string           `json:"state"`
	Timestamp       float64          `json:"timestamp"`
	ContainerStatus *ContainerStatus `json:"container_status,omitempty"`
}

// ContainerStatus reports the container's networks with their IPs.
type ContainerStatus struct {
	ContainerID  ContainerID   `json:"container_id"`
	NetworkInfos []NetworkInfo `json:"network_infos"`
}

// ContainerID is Mesos's ContainerID message.
type ContainerID struct {
	Value string `json:"value"`
}

// NetworkInfo is Mesos's NetworkInfo as protobuf JSON.
type NetworkInfo struct {
	IPAddresses []IPAddress `json:"ip_addresses"`
	Name        string      `json:"name,omitempty"`
	Labels      *Labels     `json:"labels,omitempty"`
}

// IPAddress is one NetworkInfo address; Marathon asks with an empty one.
type IPAddress struct {
	Protocol  string `json:"protocol,omitempty"`
	IPAddress string `json:"ip_address,omitempty"`
}

// Labels is the protobuf wrapper {"labels": [...]}.
type Labels struct {
	Labels []KeyValue `json:"labels"`
}

// DiscoveryInfo is what Marathon says about finding a task.
type DiscoveryInfo struct {
	Visibility string         `json:"visibility"`
	Name       string         `json:"name"`
	Ports      DiscoveryPorts `json:"ports"`
}

// DiscoveryPorts is the protobuf wrapper {"ports": [...]}.
type DiscoveryPorts struct {
	Ports []DiscoveryPort `json:"ports"`
}

// DiscoveryPort is one named port.
type DiscoveryPort struct {
	Number   uint32 `json:"number"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"`
}

// ContainerInfo is the task's container as the framework asked for it.
type ContainerInfo struct {
	Type         string        `json:"type"`
	NetworkInfos []NetworkInfo `json:"network_infos"`
}

func mesosPID(kind string, ip netip.Addr, port int) string {
	return kind + "@" + netip.AddrPortFrom(ip, uint16(port)).String()
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// BuildMasterState computes /master/state from the lab's state and its
// containers: every container started with a Mesos app is a task of the
// Marathon framework on its host's agent, TASK_RUNNING while running says
// its process runs. It is pure.
func BuildMasterState(st *State, cs []Container, running func(Container) bool, now time.Time) MasterState {
	mip := st.Master.IP.Addr()
	leader := mesosPID("master", mip, MesosPort)
	ms := MasterState{
		Version:  MesosVersion,
		ID:       st.MasterID,
		PID:      leader,
		Hostname: st.Master.Name,
		Leader:   leader,
		LeaderInfo: MasterInfo{
			ID: st.MasterID, PID: leader, Port: MesosPort, Hostname: st.Master.Name,
			Address: Address{Hostname: st.Master.Name, IP: mip.String(), Port: MesosPort},
		},
		StartTime:              unixSeconds(st.Created),
		ElectedTime:            unixSeconds(st.Created),
		Slaves:                 []MasterSlave{},
		CompletedFrameworks:    []MasterFramework{},
		OrphanTasks:            []MasterTask{},
		UnregisteredFrameworks: []string{},
	}
	for _, h := range st.Hosts {
		ms.Slaves = append(ms.Slaves, MasterSlave{
			ID:             h.ID,
			Hostname:       h.Name,
			PID:            mesosPID("slave(1)", h.IP.Addr(), AgentPort),
			Port:           AgentPort,
			Active:         true,
			RegisteredTime: unixSeconds(st.Created),
			Attributes:     map[string]string{"rack": "rack" + strconv.Itoa(h.Rack)},
			Resources:      Resources{CPUs: 4, Mem: 14861, Disk: 35577, Ports: "[1025-2180, 2182-3887, 3889-5049, 5052-8079, 8082-8180, 8182-32000]"},
		})
	}
	ms.ActivatedSlaves = len(ms.Slaves)
	fw := MasterFramework{
		ID:             st.FrameworkID,
		Name:           MarathonFramework,
		PID:            mesosPID("scheduler-"+st.MasterID, mip, MarathonPort),
		Hostname:       st.Master.Name,
		Active:         true,
		Role:           "*",
		WebuiURL:       "http://" + netip.AddrPortFrom(mip, 8080).String(),
		Tasks:          []MasterTask{},
		CompletedTasks: []MasterTask{},
	}
	sorted := append([]Container(nil), cs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, c := range sorted {
		if c.Mesos == nil || c.Phase != PhaseRunning {
			continue
		}
		t := marathonTask(st, c)
		if running(c) {
			fw.Tasks = append(fw.Tasks, t)
			continue
		}
		t.State = TaskFailed
		t.Statuses = append(t.Statuses, TaskStatus{State: TaskFailed, Timestamp: unixSeconds(now)})
		fw.CompletedTasks = append(fw.CompletedTasks, t)
	}
	ms.Frameworks = []MasterFramework{fw}
	return ms
}

func marathonTask(st *State, c Container) MasterTask {
	var labels *Labels
	if len(c.Mesos.NetworkLabels) > 0 {
		labels = &Labels{Labels: c.Mesos.NetworkLabels}
	}
	var ips []IPAddress
	for _, p := range c.IPs {
		proto := "IPv4"
		if p.Addr().Is6() {
			proto = "IPv6"
		}
		ips = append(ips, IPAddress{Protocol: proto, IPAddress: p.Addr().String()})
	}
	slave := c.Mesos.SlaveID
	if slave == "" {
		if h, ok := st.Host(c.Node); ok {
			slave = h.ID
		}
	}
	return MasterTask{
		ID:          c.Mesos.TaskID,
		Name:        c.Mesos.TaskName,
		FrameworkID: st.FrameworkID,
		SlaveID:     slave,
		State:       TaskRunning,
		Role:        "*",
		Resources:   Resources{CPUs: 0.1, Mem: 32},
		Statuses: []TaskStatus{{
			State:     TaskRunning,
			Timestamp: unixSeconds(c.Created),
			ContainerStatus: &ContainerStatus{
				ContainerID:  ContainerID{Value: c.ContainerID},
				NetworkInfos: []NetworkInfo{{IPAddresses: ips, Name: c.Network, Labels: labels}},
			},
		}},
		Discovery: &DiscoveryInfo{Visibility: "FRAMEWORK", Name: c.Mesos.TaskName, Ports: DiscoveryPorts{Ports: []DiscoveryPort{}}},
		Container: &ContainerInfo{
			Type:         "MESOS",
			NetworkInfos: []NetworkInfo{{IPAddresses: []IPAddress{{}}, Name: c.Network, Labels: labels}},
		},
	}
}

// MesosMasterConfig configures the lab's Mesos master state server.
type MesosMasterConfig struct {
	// StateDir is the lab's state directory (lab.json, containers.json).
	StateDir string
	// Listen is the address to serve on (the master's IP:5050).
	Listen string
	Logger *slog.Logger
}

// MesosMaster serves a Mesos-master-compatible /master/state built from
// the lab's files at each request.
type MesosMaster struct {
	cfg MesosMasterConfig
	log *slog.Logger
}

// NewMesosMaster checks cfg; it starts nothing.
func NewMesosMaster(cfg MesosMasterConfig) (*MesosMaster, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("mesos master: stateDir is required")
	}
	if _, err := netip.ParseAddrPort(cfg.Listen); err != nil {
		return nil, fmt.Errorf("mesos master: listen %q: want IP:PORT", cfg.Listen)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &MesosMaster{cfg: cfg, log: cfg.Logger.With("component", "lab-mesos-master")}, nil
}

// State reads the lab's files and builds the current state.
func (m *MesosMaster) State() (MasterState, error) {
	var st State
	if err := readJSON(filepath.Join(m.cfg.StateDir, labFile), &st); err != nil {
		return MasterState{}, err
	}
	l := layout{m.cfg.StateDir}
	cs, err := readContainers(l)
	if err != nil {
		return MasterState{}, err
	}
	running := func(c Container) bool {
		p, err := readPidFile(filepath.Join(l.container(c.Name), "pid"))
		return err == nil && p.alive()
	}
	return BuildMasterState(&st, cs, running, time.Now()), nil
}

// Handler serves /master/state (and its old names), /master/health and
// /version.
func (m *MesosMaster) Handler() http.Handler {
	mux := http.NewServeMux()
	state := func(w http.ResponseWriter, r *http.Request) {
		s, err := m.State()
		if err != nil {
			m.log.Warn("cannot build the state", "error", err)
			http.Error(w, "read lab state: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	}
	for _, p := range []string{"/master/state", "/master/state.json", "/state", "/state.json"} {
		mux.HandleFunc("GET "+p, state)
	}
	mux.HandleFunc("GET /master/health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"version": MesosVersion})
	})
	return mux
}

// Run serves until ctx ends.
func (m *MesosMaster) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("mesos master: %w", err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	m.log.Info("serving /master/state", "listen", m.cfg.Listen)
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return fmt.Errorf("mesos master: %w", err)
	}
}
