package records

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/dns/mesos"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testConfig(sources ...string) Config {
	return Config{
		Domain:     "mesos",
		TTL:        60,
		IPSources:  sources,
		SRVWeight:  1,
		SOA:        SOA{Mname: "ns1.mesos.", Rname: "root.ns1.mesos.", Refresh: 60, Retry: 600, Expire: 86400, Minttl: 60},
		NSAddrs:    []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Masters:    []string{"10.0.4.10:5050"},
		DCOSDomain: "dcos.thisdcos.directory",
		DCOSTTL:    5,
	}
}

func fixtureState(t testing.TB) *mesos.State {
	t.Helper()
	b, err := os.ReadFile("../mesos/testdata/state.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesos.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// golden compares got with testdata/<name>.golden (rewritten by -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", path, diff)
	}
}

func renderWithWarnings(s *Set) string {
	out := s.Render()
	for _, w := range s.Warnings {
		out += "; warning: " + w + "\n"
	}
	return out
}

func TestBuildGolden(t *testing.T) {
	state := fixtureState(t)
	eps, nodes := datastoreFixture()
	for _, tc := range []struct {
		name    string
		sources []string
		in      Input
	}{
		{"mesos-netinfo-host", []string{"netinfo", "host"}, Input{Mesos: state}},
		{"mesos-host-netinfo", []string{"host", "netinfo"}, Input{Mesos: state}},
		{"datastore", []string{"netinfo", "host"}, Input{Endpoints: eps, Nodes: nodes}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden(t, tc.name, renderWithWarnings(Build(testConfig(tc.sources...), tc.in)))
		})
	}
}

// lookup returns the records of name as sorted strings.
func lookup(s *Set, name string) []string {
	rr := s.Names[name]
	if rr == nil {
		return nil
	}
	var out []string
	for _, ip := range append(slices.Clone(rr.A), rr.AAAA...) {
		out = append(out, ip.String())
	}
	for _, r := range rr.SRV {
		out = append(out, r.Target+":"+itoa(r.Port))
	}
	out = append(out, rr.PTR...)
	slices.Sort(out)
	return out
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

func TestBuildMesosNames(t *testing.T) {
	state := fixtureState(t)
	netinfo := Build(testConfig("netinfo", "host"), Input{Mesos: state})
	host := Build(testConfig("host", "netinfo"), Input{Mesos: state})
	myapp := "myapp-subgroup-outergroup-" + TaskHash("outergroup_subgroup_myapp.instance-5c2b9d1e-8f3a-11e8-9a0b-70b3d5800001._app.1") + "-s1.marathon"
	nginx := "nginx-" + TaskHash("nginx.7a1c9e2f-8f3a-11e8-9a0b-70b3d5800001") + "-s2.marathon"
	for _, tc := range []struct {
		name  string
		set   *Set
		qname string
		want  []string
	}{
		{"netinfo first gives the container IP (newest running status)", netinfo, "myapp-subgroup-outergroup.marathon.mesos.", []string{"172.29.1.5"}},
		{"host first gives the agent IP (DC/OS default)", host, "myapp-subgroup-outergroup.marathon.mesos.", []string{"10.0.1.11"}},
		{".slave is always the agent", netinfo, "myapp-subgroup-outergroup.marathon.slave.mesos.", []string{"10.0.1.11"}},
		{"canonical name", netinfo, myapp + ".mesos.", []string{"172.29.1.5"}},
		{"canonical .slave name", host, myapp + ".slave.mesos.", []string{"10.0.1.11"}},
		{"legacy raw discovery name", netinfo, "myapp.subgroup.outergroup.marathon.mesos.", []string{"172.29.1.5"}},
		{"discovery SRV", netinfo, "_myapp-subgroup-outergroup._tcp.marathon.mesos.", []string{myapp + ".mesos.:80"}},
		{"named port SRV", netinfo, "_http._myapp-subgroup-outergroup._tcp.marathon.mesos.", []string{myapp + ".mesos.:80"}},
		{"legacy named port SRV", netinfo, "_http._myapp.subgroup.outergroup._tcp.marathon.mesos.", []string{"myapp.subgroup.outergroup-" + myapp[len("myapp-subgroup-outergroup-"):] + ".mesos.:80"}},
		{"no udp SRV for a tcp discovery port", netinfo, "_myapp-subgroup-outergroup._udp.marathon.mesos.", nil},
		{"port resources SRV under .slave", netinfo, "_nginx._tcp.marathon.slave.mesos.", []string{nginx + ".slave.mesos.:31215"}},
		{"port resources SRV, udp too", netinfo, "_nginx._udp.marathon.slave.mesos.", []string{nginx + ".slave.mesos.:31215"}},
		{"discovery SRV of a host task", netinfo, "_nginx._tcp.marathon.mesos.", []string{nginx + ".mesos.:31215"}},
		{"host task netinfo is the agent", netinfo, "nginx.marathon.mesos.", []string{"10.0.1.12"}},
		{"docker bridge task, netinfo first: the bridge IP (mesos-dns#369)", netinfo, "bridged.marathon.mesos.", []string{"172.17.0.2"}},
		{"two instances, dual stack", netinfo, "db.marathon.mesos.", []string{"172.29.1.7", "172.29.2.8", "fd00:29::2:8"}},
		{"two instances SRV", netinfo, "_pg._db._tcp.marathon.mesos.", []string{
			"db-" + TaskHash("db.instance-0f1e2d3c-8f3b-11e8-9a0b-70b3d5800001._app.1") + "-s1.marathon.mesos.:5432",
			"db-" + TaskHash("db.instance-1a2b3c4d-8f3b-11e8-9a0b-70b3d5800001._app.1") + "-s2.marathon.mesos.:5432",
		}},
		{"staging task has no name", netinfo, "staging.marathon.mesos.", nil},
		{"task on an unknown agent has no name", netinfo, "lost-agent.marathon.mesos.", nil},
		{"completed task has no name", netinfo, "old.marathon.mesos.", nil},
		{"framework name sanitized per part", netinfo, "node-0-server.cassandra.prod-1.mesos.", []string{"10.0.1.13"}},
		{"framework record", netinfo, "cassandra.prod-1.mesos.", []string{"10.0.1.13"}},
		{"framework SRV", netinfo, "_framework._tcp.cassandra.prod-1.mesos.", []string{"cassandra.prod-1.mesos.:40213"}},
		{"marathon framework record", netinfo, "marathon.mesos.", []string{"10.0.4.10"}},
		{"leader", netinfo, "leader.mesos.", []string{"10.0.4.10"}},
		{"leader SRV", netinfo, "_leader._tcp.mesos.", []string{"leader.mesos.:5050"}},
		{"leader SRV udp", netinfo, "_leader._udp.mesos.", []string{"leader.mesos.:5050"}},
		{"master", netinfo, "master.mesos.", []string{"10.0.4.10"}},
		{"master0", netinfo, "master0.mesos.", []string{"10.0.4.10"}},
		{"slave", netinfo, "slave.mesos.", []string{"10.0.1.11", "10.0.1.12", "10.0.1.13"}},
		{"slave SRV", netinfo, "_slave._tcp.mesos.", []string{"slave.mesos.:5051"}},
		{"ns1", netinfo, "ns1.mesos.", []string{"127.0.0.1"}},
		{"PTR of a CNI container IP", netinfo, "5.1.29.172.in-addr.arpa.", []string{myapp + ".mesos."}},
		{"no PTR for a bridge IP", netinfo, "2.0.17.172.in-addr.arpa.", nil},
		{"DC/OS containerip", host, "myapp-subgroup-outergroup.marathon.containerip.dcos.thisdcos.directory.", []string{"172.29.1.5"}},
		{"DC/OS agentip", netinfo, "myapp-subgroup-outergroup.marathon.agentip.dcos.thisdcos.directory.", []string{"10.0.1.11"}},
		{"DC/OS autoip without host port", netinfo, "myapp-subgroup-outergroup.marathon.autoip.dcos.thisdcos.directory.", []string{"172.29.1.5"}},
		{"DC/OS autoip with host port", netinfo, "bridged.marathon.autoip.dcos.thisdcos.directory.", []string{"10.0.1.11"}},
		{"DC/OS containerip of a bridge task", netinfo, "bridged.marathon.containerip.dcos.thisdcos.directory.", []string{"172.17.0.2"}},
		{"DC/OS framework is one label", netinfo, "node-0-server.cassandra-prod-1.agentip.dcos.thisdcos.directory.", []string{"10.0.1.13"}},
		{"DC/OS leader", netinfo, "leader.dcos.thisdcos.directory.", []string{"10.0.4.10"}},
		{"DC/OS master", netinfo, "master.dcos.thisdcos.directory.", []string{"10.0.4.10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, lookup(tc.set, tc.qname)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.qname, diff)
			}
		})
	}
	if rr := netinfo.Names["dcos.thisdcos.directory."]; rr != nil {
		t.Errorf("zone apex has records: %+v", rr)
	}
	if got := netinfo.Names["bridged.marathon.autoip.dcos.thisdcos.directory."].TTL; got != 5 {
		t.Errorf("DC/OS TTL %d, want 5", got)
	}
}

func TestBuildRFC952(t *testing.T) {
	cfg := testConfig("netinfo", "host")
	cfg.EnforceRFC952 = true
	s := Build(cfg, Input{Mesos: fixtureState(t)})
	if got := lookup(s, "myapp-subgroup-outergrou.marathon.mesos."); len(got) != 1 {
		t.Errorf("RFC952 name: got %v, want one address;\n%s", got, s.Render())
	}
}

func TestBuildMasters(t *testing.T) {
	// The cases follow Mesos-DNS's TestMasterRecord.
	for _, tc := range []struct {
		name    string
		masters []string
		leader  string
		want    map[string][]string
	}{
		{"leader only", nil, "5@0.0.0.6:7", map[string][]string{
			"leader.foo.com.": {"0.0.0.6"}, "master.foo.com.": {"0.0.0.6"}, "master0.foo.com.": {"0.0.0.6"},
			"_leader._tcp.foo.com.": {"leader.foo.com.:7"}, "_leader._udp.foo.com.": {"leader.foo.com.:7"}}},
		{"IPv6 leader", nil, "5@[2001:db8::1]:7", map[string][]string{
			"leader.foo.com.": {"2001:db8::1"}, "master.foo.com.": {"2001:db8::1"}, "master0.foo.com.": {"2001:db8::1"}}},
		{"leader not in the list", []string{"0.0.0.8:9"}, "5@0.0.0.6:7", map[string][]string{
			"master.foo.com.": {"0.0.0.6", "0.0.0.8"}, "master0.foo.com.": {"0.0.0.8"}, "master1.foo.com.": {"0.0.0.6"}}},
		{"duplicate masters", []string{"0.0.0.8:9", "0.0.0.8:9"}, "5@0.0.0.6:7", map[string][]string{
			"master0.foo.com.": {"0.0.0.8"}, "master1.foo.com.": {"0.0.0.6"}, "master2.foo.com.": nil}},
		{"leader listed last", []string{"0.0.0.8:9", "0.0.0.6:7"}, "5@0.0.0.6:7", map[string][]string{
			"master0.foo.com.": {"0.0.0.8"}, "master1.foo.com.": {"0.0.0.6"}}},
		{"leader listed twice", []string{"0.0.0.8:9", "0.0.0.6:7", "0.0.0.6:7"}, "5@0.0.0.6:7", map[string][]string{
			"master0.foo.com.": {"0.0.0.8"}, "master1.foo.com.": {"0.0.0.6"}, "master2.foo.com.": nil}},
		{"leader in the middle", []string{"0.0.0.8:9", "0.0.0.6:7", "0.0.0.7:0"}, "5@0.0.0.6:7", map[string][]string{
			"master.foo.com.": {"0.0.0.6", "0.0.0.7", "0.0.0.8"}, "master0.foo.com.": {"0.0.0.8"}, "master1.foo.com.": {"0.0.0.6"}, "master2.foo.com.": {"0.0.0.7"}}},
		{"mixed families", []string{"0.0.0.8:9", "0.0.0.6:7", "[2001:db8::1]:0"}, "5@0.0.0.6:7", map[string][]string{
			"master.foo.com.": {"0.0.0.6", "0.0.0.8", "2001:db8::1"}, "master2.foo.com.": {"2001:db8::1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("netinfo")
			cfg.Domain, cfg.Masters, cfg.DCOSDomain = "foo.com", tc.masters, ""
			s := Build(cfg, Input{Mesos: &mesos.State{Leader: tc.leader}})
			for name, want := range tc.want {
				if diff := cmp.Diff(want, lookup(s, name)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

func datastoreFixture() ([]*api.WorkloadEndpoint, []*api.Node) {
	node := func(name, v4 string, addrs ...string) *api.Node {
		n := &api.Node{ObjectMeta: api.ObjectMeta{Name: name}}
		if v4 != "" {
			n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: v4}
		}
		for _, a := range addrs {
			n.Spec.Addresses = append(n.Spec.Addresses, api.NodeAddress{Address: a})
		}
		return n
	}
	nodes := []*api.Node{
		node("host-1", "10.0.1.11/24"),
		node("host-2", "", "fd00::12/64", "10.0.1.12"),
	}
	eps := []*api.WorkloadEndpoint{
		{
			ObjectMeta: api.ObjectMeta{Name: "host-1-mesos-8d1f-eth0", Namespace: "default"},
			Spec: api.WorkloadEndpointSpec{
				Orchestrator: "mesos", Node: "host-1", Workload: "8d1f1f0e-2b3c-4d5e-8f9a-0b1c2d3e4f50",
				IPNetworks: []string{"172.29.1.5/32"},
				Ports:      []api.WorkloadEndpointPort{{Name: "http", Protocol: api.ProtocolTCP, Port: 80}},
				Mesos:      &api.MesosInfo{App: "/outergroup/subgroup/myapp", TaskID: "outergroup_subgroup_myapp.instance-5c2b9d1e-8f3a-11e8-9a0b-70b3d5800001._app.1"},
			},
		},
		{
			ObjectMeta: api.ObjectMeta{Name: "host-2-mesos-9a8b-eth0", Namespace: "default"},
			Spec: api.WorkloadEndpointSpec{
				Orchestrator: "mesos", Node: "host-2", Workload: "9a8b7c6d",
				IPNetworks: []string{"172.29.2.9/32", "fd00:29::2:9/128"},
				Ports:      []api.WorkloadEndpointPort{{Name: "dns", Protocol: api.ProtocolUDP, Port: 53, HostPort: 31053}},
				Mesos:      &api.MesosInfo{TaskName: "resolver", TaskID: "resolver.1", Framework: "Metronome"},
			},
		},
		{
			ObjectMeta: api.ObjectMeta{Name: "web-abc-eth0", Namespace: "shop"},
			Spec:       api.WorkloadEndpointSpec{Orchestrator: "k8s", Node: "host-1", Workload: "web", IPNetworks: []string{"172.29.1.20/32"}},
		},
		{
			ObjectMeta: api.ObjectMeta{Name: "web-def-eth0", Namespace: "shop"},
			Spec:       api.WorkloadEndpointSpec{Orchestrator: "k8s", Node: "host-2", Workload: "web", IPNetworks: []string{"172.29.2.21/32"}},
		},
		{
			ObjectMeta: api.ObjectMeta{Name: "nameless", Namespace: ""},
			Spec:       api.WorkloadEndpointSpec{Node: "host-2", IPNetworks: []string{"172.29.2.30", "bogus"}},
		},
		{
			ObjectMeta: api.ObjectMeta{Name: "$$$", Namespace: "default"},
			Spec:       api.WorkloadEndpointSpec{Node: "host-2", Workload: "%%%", IPNetworks: []string{"172.29.2.31/32"}},
		},
	}
	return eps, nodes
}

func TestBuildDatastoreNames(t *testing.T) {
	eps, nodes := datastoreFixture()
	s := Build(testConfig("netinfo", "host"), Input{Endpoints: eps, Nodes: nodes})
	myapp := "myapp-subgroup-outergroup-" + TaskHash("outergroup_subgroup_myapp.instance-5c2b9d1e-8f3a-11e8-9a0b-70b3d5800001._app.1") + "-1.marathon"
	resolver := "resolver-" + TaskHash("resolver.1") + "-2.metronome"
	for _, tc := range []struct {
		qname string
		want  []string
	}{
		{"myapp-subgroup-outergroup.marathon.mesos.", []string{"172.29.1.5"}},
		{"myapp-subgroup-outergroup.marathon.slave.mesos.", []string{"10.0.1.11"}},
		{myapp + ".mesos.", []string{"172.29.1.5"}},
		{"_http._myapp-subgroup-outergroup._tcp.marathon.mesos.", []string{myapp + ".mesos.:80"}},
		{"resolver.metronome.mesos.", []string{"172.29.2.9", "fd00:29::2:9"}},
		{"resolver.metronome.slave.mesos.", []string{"10.0.1.12", "fd00::12"}},
		{"_resolver._udp.metronome.mesos.", []string{resolver + ".mesos.:53"}},
		{"_resolver._udp.metronome.slave.mesos.", []string{resolver + ".slave.mesos.:31053"}},
		{"_resolver._tcp.metronome.slave.mesos.", []string{resolver + ".slave.mesos.:31053"}},
		{"resolver.metronome.autoip.dcos.thisdcos.directory.", []string{"10.0.1.12", "fd00::12"}},
		{"resolver.metronome.containerip.dcos.thisdcos.directory.", []string{"172.29.2.9", "fd00:29::2:9"}},
		{"myapp-subgroup-outergroup.marathon.autoip.dcos.thisdcos.directory.", []string{"172.29.1.5"}},
		{"web.shop.mesos.", []string{"172.29.1.20", "172.29.2.21"}},
		{"nameless.default.mesos.", []string{"172.29.2.30"}},
		{"20.1.29.172.in-addr.arpa.", []string{"web.shop.mesos."}},
		{ReverseName(netip.MustParseAddr("fd00:29::2:9")), []string{resolver + ".mesos."}},
		{"slave.mesos.", []string{"10.0.1.11", "10.0.1.12", "fd00::12"}},
		{"leader.mesos.", nil},
		{"8d1f1f0e-2b3c-4d5e-8f9a-0b1c2d3e4f50.default.mesos.", nil},
	} {
		if diff := cmp.Diff(tc.want, lookup(s, tc.qname)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.qname, diff)
		}
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], `endpoint default/$$$`) {
		t.Errorf("warnings %q, want one about default/$$$", s.Warnings)
	}
}

// A task known to both the Mesos master and the datastore gets its names
// once, from the master, without duplicates.
func TestBuildMergeWithoutDuplicates(t *testing.T) {
	eps, nodes := datastoreFixture()
	cfg := testConfig("netinfo", "host")
	merged := Build(cfg, Input{Mesos: fixtureState(t), Endpoints: eps, Nodes: nodes})
	fromMesos := Build(cfg, Input{Mesos: fixtureState(t)})
	for _, name := range []string{
		"myapp-subgroup-outergroup.marathon.mesos.",
		"_myapp-subgroup-outergroup._tcp.marathon.mesos.",
		"myapp-subgroup-outergroup.marathon.containerip.dcos.thisdcos.directory.",
	} {
		if diff := cmp.Diff(lookup(fromMesos, name), lookup(merged, name)); diff != "" {
			t.Errorf("%s: merged differs from Mesos alone (-mesos +merged):\n%s", name, diff)
		}
	}
	viaNode := "myapp-subgroup-outergroup-" + TaskHash("outergroup_subgroup_myapp.instance-5c2b9d1e-8f3a-11e8-9a0b-70b3d5800001._app.1") + "-1.marathon.mesos."
	if got := lookup(merged, viaNode); got != nil {
		t.Errorf("the datastore copy of a Mesos task made %s: %v", viaNode, got)
	}
	// Tasks only in the datastore still resolve.
	if got := lookup(merged, "resolver.metronome.mesos."); len(got) != 2 {
		t.Errorf("resolver.metronome.mesos. = %v, want the endpoint's two IPs", got)
	}
	var tasks int
	for _, f := range merged.Frameworks {
		if f.Name == "marathon" {
			tasks = len(f.Tasks)
		}
	}
	if tasks != 5 {
		t.Errorf("enumerate lists %d marathon tasks, want 5 (no duplicate)", tasks)
	}
}

func TestBuildEmpty(t *testing.T) {
	s := Build(testConfig("netinfo", "host"), Input{})
	want := "dcos.thisdcos.directory.\t5\tIN\tNS\tns1.mesos.\n" +
		"dcos.thisdcos.directory.\t5\tIN\tSOA\tns1.mesos. root.ns1.mesos. 60 600 86400 60\n" +
		"mesos.\t60\tIN\tNS\tns1.mesos.\n" +
		"mesos.\t60\tIN\tSOA\tns1.mesos. root.ns1.mesos. 60 600 86400 60\n" +
		"ns1.mesos.\t60\tIN\tA\t127.0.0.1\n"
	if diff := cmp.Diff(want, s.Render()); diff != "" {
		t.Errorf("empty set (-want +got):\n%s", diff)
	}
	if !InZone("x.mesos.", "mesos.") || !InZone("mesos.", "mesos.") || InZone("xmesos.", "mesos.") {
		t.Errorf("InZone is wrong")
	}
}

func FuzzBuild(f *testing.F) {
	b, err := os.ReadFile("../mesos/testdata/state.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"leader":"master@10.0.0.1:5050","slaves":[{"id":"a-S1","pid":"slave(1)@10.0.0.2:5051"}],"frameworks":[{"name":"..","tasks":[{"id":"t","name":"$$","slave_id":"a-S1","state":"TASK_RUNNING","resources":{"ports":"[1-3]"},"discovery":{"name":"A.B","ports":{"ports":[{"number":1,"protocol":"","name":"x"}]}}}]}]}`))
	eps, nodes := datastoreFixture()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := mesos.Decode(data)
		if err != nil {
			return
		}
		set := Build(testConfig("netinfo", "mesos", "docker", "host"), Input{Mesos: s, Endpoints: eps, Nodes: nodes})
		for name := range set.Names {
			if err := checkName(name); err != nil {
				t.Fatalf("Build made an invalid name %q: %v", name, err)
			}
		}
	})
}
