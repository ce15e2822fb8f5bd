// Package records computes the DNS records Tabby serves from what it knows:
// the Mesos master's state (the names Mesos-DNS gives) and the Tabby
// datastore's WorkloadEndpoints and Nodes. Build is a pure function:
// the same input always gives the same Set.
//
// It imports internal/api and internal/dns/mesos only; it must not import
// miekg/dns, etcd, the datastore or anything that does I/O.
package records

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/dns/mesos"
)

// IP sources, in Mesos-DNS's spelling.
const (
	SourceNetinfo = "netinfo" // container IPs (NetworkInfo)
	SourceHost    = "host"    // the agent's IP
	SourceMesos   = "mesos"   // status label MesosContainerizer.NetworkSettings.IPAddress
	SourceDocker  = "docker"  // status label Docker.NetworkSettings.IPAddress
)

// DefaultFramework is the framework of a WorkloadEndpoint whose spec.mesos
// names none.
const DefaultFramework = "marathon"

// Config says what names to make.
type Config struct {
	Domain        string // "mesos" (lower case, no trailing dot)
	TTL           uint32
	IPSources     []string // order matters: the first source with any IP wins
	EnforceRFC952 bool
	SRVWeight     uint16
	SOA           SOA          // of Domain; names fully qualified
	NSAddrs       []netip.Addr // addresses of SOA.Mname (where the server listens)
	Masters       []string     // "host:port" of every master, for masterN records
	DCOSDomain    string       // "dcos.thisdcos.directory"; "" turns DC/OS names off
	DCOSTTL       uint32
}

// Input is everything records are made from.
type Input struct {
	// Mesos is the last good master state, or nil.
	Mesos     *mesos.State
	Endpoints []*api.WorkloadEndpoint
	Nodes     []*api.Node
}

// task is one running task, from the Mesos state or from a
// WorkloadEndpoint's spec.mesos.
type task struct {
	framework      string // raw framework name
	id             string
	name           string // raw TaskInfo.name
	discoveryName  string // raw DiscoveryInfo.name; "" when there is none
	agentID        string
	agentIPs       []netip.Addr
	sourceIPs      map[string][]netip.Addr
	hostPorts      []uint16 // port resources
	discoveryPorts []discoveryPort
	hasDiscovery   bool
	containerIPs   []netip.Addr // DC/OS containerip
	hostPortMapped bool         // DC/OS autoip points at the agent
	ptrIPs         []netip.Addr // container IPs that get a PTR record
}

type discoveryPort struct {
	number   uint16
	protocol string
	name     string
}

// Build computes every record from in. Items it cannot use (a task on an
// unknown agent, a name that is not a valid DNS name, a bad port range)
// are skipped and listed in Set.Warnings; Build never fails.
func Build(cfg Config, in Input) *Set {
	hint := 8*len(in.Endpoints) + 64
	if in.Mesos != nil {
		for _, f := range in.Mesos.Frameworks {
			hint += 16 * len(f.Tasks)
		}
	}
	b := newBuilder(cfg, hint)
	domain := cfg.Domain + "."
	nodeIPs := nodeAddrs(in.Nodes)

	mesosTasks := map[string]bool{}
	if in.Mesos != nil {
		for _, t := range b.mesosState(in.Mesos) {
			mesosTasks[t.framework+"\x00"+t.id] = true
			b.taskRecords(t)
		}
	} else {
		for _, n := range sortedNodes(in.Nodes) {
			for _, ip := range nodeIPs[n.Name] {
				b.addIP("slave."+domain, cfg.TTL, ip)
			}
		}
	}
	for _, ep := range sortedEndpoints(in.Endpoints) {
		if t, ok := endpointTask(ep, nodeIPs); ok {
			if !mesosTasks[t.framework+"\x00"+t.id] {
				b.taskRecords(t)
			}
			continue
		}
		b.endpointRecords(ep)
	}
	for _, ip := range cfg.NSAddrs {
		b.addIP(cfg.SOA.Mname, cfg.TTL, ip.Unmap())
	}

	zones := []Zone{{Name: domain, TTL: cfg.TTL, SOA: cfg.SOA, NS: []string{cfg.SOA.Mname}}}
	if cfg.DCOSDomain != "" {
		zones = append(zones, Zone{Name: cfg.DCOSDomain + ".", TTL: cfg.DCOSTTL, SOA: cfg.SOA, NS: []string{cfg.SOA.Mname}})
	}
	return b.freeze(zones)
}

// label is the label function Mesos-DNS would use.
func (b *builder) label(s string) string {
	if b.cfg.EnforceRFC952 {
		return RFC952(s)
	}
	return RFC1123(s)
}

// taskIPs picks the task's IPs by IPSources: the first source that yields
// any address wins, with all of its addresses.
func (b *builder) taskIPs(t *task) []netip.Addr {
	for _, src := range b.cfg.IPSources {
		if ips := t.sourceIPs[src]; len(ips) > 0 {
			return ips
		}
	}
	return nil
}

// taskRecords adds the Mesos-DNS and DC/OS names of one running task.
func (b *builder) taskRecords(t *task) {
	fw := b.framework(t.framework)
	enum := EnumTask{Name: t.name, ID: t.id, Records: []EnumRecord{}}
	fname := DomainFrag(t.framework, ".", b.label)
	if fname == "" {
		b.warnf("task %s: framework name %q gives no DNS label", t.id, t.framework)
	} else {
		c := taskContext{
			hash:  TaskHash(t.id),
			sid:   slaveIDTail(t.agentID),
			ips:   b.taskIPs(t),
			fname: fname,
		}
		if t.hasDiscovery {
			// Mesos-DNS makes the names twice: with the raw discovery name
			// (legacy) and with its label.
			if raw := t.discoveryName; isLegacyName(raw) {
				c.name = raw
				b.taskContextRecords(t, c, &enum)
			}
			c.name = b.label(t.discoveryName)
		} else {
			c.name = b.label(t.name)
		}
		if c.name == "" {
			b.warnf("task %s: name %q gives no DNS label", t.id, t.name)
		} else {
			b.taskContextRecords(t, c, &enum)
			for _, ip := range t.ptrIPs {
				b.addPTR(ip, c.canonical()+"."+b.cfg.Domain+".")
			}
		}
	}
	b.dcosRecords(t, &enum)
	fw.Tasks = append(fw.Tasks, enum)
}

// isLegacyName says whether Mesos-DNS's copy of the names with the raw
// DiscoveryInfo name can be answered: Mesos-DNS stores it unchanged and
// matches lower-cased queries, so only lower-case host names work.
func isLegacyName(raw string) bool {
	return raw != "" && checkName(raw+".") == nil
}

type taskContext struct {
	name, hash, sid, fname string
	ips                    []netip.Addr
}

func (c taskContext) canonical() string {
	return c.name + "-" + c.hash + "-" + c.sid + "." + c.fname
}

func (b *builder) taskContextRecords(t *task, c taskContext, enum *EnumTask) {
	ttl := b.cfg.TTL
	tail := "." + b.cfg.Domain + "."
	canonical := c.canonical()
	arec := c.name + "." + c.fname
	addIP := func(name string, ip netip.Addr) { b.addTaskIP(enum, name, ttl, ip) }
	addSRV := func(name, target string, port uint16) {
		if b.addSRV(name, ttl, target, port) {
			enum.Records = append(enum.Records, EnumRecord{Name: name, Host: target + ":" + strconv.Itoa(int(port)), Rtype: "SRV"})
		}
	}
	for _, ip := range c.ips {
		addIP(arec+tail, ip)
		addIP(canonical+tail, ip)
	}
	for _, ip := range t.agentIPs {
		addIP(arec+".slave"+tail, ip)
		addIP(canonical+".slave"+tail, ip)
	}
	// Port resources: _task._tcp|_udp.fw.slave.domain, and without .slave
	// when the task has no DiscoveryInfo; targets are on the agent.
	slaveHost := canonical + ".slave" + tail
	for _, port := range t.hostPorts {
		for _, proto := range []string{"tcp", "udp"} {
			name := "_" + c.name + "._" + proto + "." + c.fname
			addSRV(name+".slave"+tail, slaveHost, port)
			if !t.hasDiscovery {
				addSRV(name+tail, slaveHost, port)
			}
		}
	}
	if !t.hasDiscovery {
		return
	}
	// DiscoveryInfo ports: _task._proto.fw.domain (and _port._task…) with
	// targets that resolve per IPSources.
	for _, dp := range t.discoveryPorts {
		protos := []string{"tcp", "udp"}
		if p := b.label(dp.protocol); p != "" {
			protos = []string{p}
		}
		for _, proto := range protos {
			name := "_" + c.name + "._" + proto + "." + c.fname
			addSRV(name+tail, canonical+tail, dp.number)
			if pn := b.label(dp.name); pn != "" {
				addSRV("_"+pn+"."+name+tail, canonical+tail, dp.number)
			}
		}
	}
}

// addTaskIP adds an A or AAAA record of a task and lists it for
// /v1/enumerate when it is new.
func (b *builder) addTaskIP(enum *EnumTask, name string, ttl uint32, ip netip.Addr) {
	if b.addIP(name, ttl, ip) {
		rtype := "A"
		if !ip.Is4() {
			rtype = "AAAA"
		}
		enum.Records = append(enum.Records, EnumRecord{Name: name, Host: ip.String(), Rtype: rtype})
	}
}

// dcosRecords adds the DC/OS names <task>.<framework>.{agentip,containerip,
// autoip}.<DCOSDomain> as dcos-net does.
func (b *builder) dcosRecords(t *task, enum *EnumTask) {
	if b.cfg.DCOSDomain == "" {
		return
	}
	name := t.name
	if t.discoveryName != "" {
		name = t.discoveryName
	}
	n, fw := RFC1123(name), RFC1123(t.framework)
	if n == "" || fw == "" {
		return
	}
	base := n + "." + fw + "."
	tail := "." + b.cfg.DCOSDomain + "."
	add := func(kind string, ips []netip.Addr) {
		for _, ip := range ips {
			b.addTaskIP(enum, base+kind+tail, b.cfg.DCOSTTL, ip)
		}
	}
	add("agentip", t.agentIPs)
	add("containerip", t.containerIPs)
	auto := t.containerIPs
	if t.hostPortMapped || len(auto) == 0 {
		auto = t.agentIPs
	}
	add("autoip", auto)
}

// mesosState adds the agent, framework and master records of a Mesos state
// and returns its running tasks on known agents.
func (b *builder) mesosState(s *mesos.State) []*task {
	cfg := b.cfg
	domain := cfg.Domain + "."
	known := map[string]bool{}
	agentIPs := map[string][]netip.Addr{}
	for _, a := range s.SortedAgents() {
		known[a.ID] = true
		ip, port, err := a.Addr()
		if err != nil {
			b.warnf("%v", err)
			continue
		}
		agentIPs[a.ID] = []netip.Addr{ip}
		b.addIP("slave."+domain, cfg.TTL, ip)
		b.addSRV("_slave._tcp."+domain, cfg.TTL, "slave."+domain, port)
	}
	for _, f := range s.Frameworks {
		if ip, port, ok := f.Addr(); ok {
			name := DomainFrag(f.Name, ".", b.label) + "." + domain
			b.addIP(name, cfg.TTL, ip)
			if port != 0 {
				b.addSRV("_framework._tcp."+name, cfg.TTL, name, port)
			}
		}
	}
	b.masterRecords(s)

	var tasks []*task
	for _, f := range s.Frameworks {
		b.framework(f.Name)
		for i := range f.Tasks {
			mt := &f.Tasks[i]
			if mt.State != mesos.TaskRunning || !known[mt.SlaveID] {
				continue
			}
			ports, err := mt.Ports()
			if err != nil {
				b.warnf("%v", err)
			}
			running := mt.RunningStatus()
			latest := mt.LatestStatus()
			t := &task{
				framework: f.Name,
				id:        mt.ID,
				name:      mt.Name,
				agentID:   mt.SlaveID,
				agentIPs:  agentIPs[mt.SlaveID],
				sourceIPs: map[string][]netip.Addr{
					SourceNetinfo: running.NetworkInfoIPs(),
					SourceHost:    agentIPs[mt.SlaveID],
					SourceMesos:   running.LabelIPs(mesos.MesosIPLabel),
					SourceDocker:  running.LabelIPs(mesos.DockerIPLabel),
				},
				hostPorts:      ports,
				containerIPs:   latest.NetworkInfoIPs(),
				hostPortMapped: mt.HasHostPort(),
				ptrIPs:         namedNetworkIPs(running),
			}
			if d := mt.Discovery; d != nil && d.Name != "" {
				t.hasDiscovery = true
				t.discoveryName = d.Name
				for _, p := range d.Ports.Ports {
					if p.Number > 65535 {
						b.warnf("task %s: discovery port %d is not a port", mt.ID, p.Number)
						continue
					}
					t.discoveryPorts = append(t.discoveryPorts, discoveryPort{number: uint16(p.Number), protocol: p.Protocol, name: p.Name})
				}
			}
			tasks = append(tasks, t)
		}
	}
	return tasks
}

// namedNetworkIPs are the IPs of a status's named (CNI) networks: the ones
// that belong to the container alone and so get a PTR record.
func namedNetworkIPs(s *mesos.Status) []netip.Addr {
	if s == nil {
		return nil
	}
	var out []netip.Addr
	for _, ni := range s.ContainerStatus.NetworkInfos {
		if ni.Name == "" {
			continue
		}
		one := mesos.Status{ContainerStatus: mesos.ContainerStatus{NetworkInfos: []mesos.NetworkInfo{ni}}}
		out = append(out, one.NetworkInfoIPs()...)
	}
	return out
}

// masterRecords adds leader.<d>, master.<d>, master<N>.<d> and the _leader
// SRV records as Mesos-DNS does (masterN follows the configured masters'
// order; a leader missing from the list gets the next index), and
// leader/master in the DC/OS zone.
func (b *builder) masterRecords(s *mesos.State) {
	cfg := b.cfg
	domain := cfg.Domain + "."
	ip, port, err := s.LeaderAddr()
	if err != nil {
		b.warnf("%v", err)
		return
	}
	leaderAddress := s.Leader[strings.LastIndexByte(s.Leader, '@')+1:]
	b.addIP("leader."+domain, cfg.TTL, ip)
	b.addIP("master."+domain, cfg.TTL, ip)
	b.addSRV("_leader._tcp."+domain, cfg.TTL, "leader."+domain, port)
	b.addSRV("_leader._udp."+domain, cfg.TTL, "leader."+domain, port)
	if cfg.DCOSDomain != "" {
		b.addIP("leader."+cfg.DCOSDomain+".", cfg.DCOSTTL, ip)
		b.addIP("master."+cfg.DCOSDomain+".", cfg.DCOSTTL, ip)
	}
	addedLeader := false
	idx := 0
	for _, m := range cfg.Masters {
		h, _, err := net.SplitHostPort(m)
		if err != nil {
			b.warnf("master %q: %v", m, err)
			continue
		}
		mip, err := netip.ParseAddr(h)
		if err != nil {
			b.warnf("master %q: host is not an IP address", m)
			continue
		}
		mip = mip.Unmap()
		if m != leaderAddress {
			if !b.addIP("master."+domain, cfg.TTL, mip) {
				continue // a duplicate master
			}
		} else if addedLeader {
			continue // the leader listed twice
		}
		if cfg.DCOSDomain != "" {
			b.addIP("master."+cfg.DCOSDomain+".", cfg.DCOSTTL, mip)
		}
		b.addIP("master"+strconv.Itoa(idx)+"."+domain, cfg.TTL, mip)
		idx++
		if m == leaderAddress {
			addedLeader = true
		}
	}
	if !addedLeader {
		b.addIP("master"+strconv.Itoa(idx)+"."+domain, cfg.TTL, ip)
	}
}
