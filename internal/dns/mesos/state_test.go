package mesos

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readFixture(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/state.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeFixture(t *testing.T) {
	s, err := Decode(readFixture(t))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	ip, port, err := s.LeaderAddr()
	if err != nil || ip != netip.MustParseAddr("10.0.4.10") || port != 5050 {
		t.Errorf("LeaderAddr() = %v, %d, %v; want 10.0.4.10, 5050, nil", ip, port, err)
	}
	if got, want := len(s.Slaves), 3; got != want {
		t.Errorf("got %d agents, want %d", got, want)
	}
	a, p, err := s.Slaves[1].Addr()
	if err != nil || a != netip.MustParseAddr("10.0.1.12") || p != 5051 {
		t.Errorf("agent Addr() = %v, %d, %v; want 10.0.1.12, 5051, nil", a, p, err)
	}
	if got, want := s.Frameworks[1].Name, "Cassandra.Prod_1"; got != want {
		t.Errorf("framework name %q, want %q", got, want)
	}
	myapp := s.Frameworks[0].Tasks[0]
	if got, want := myapp.RunningStatus().NetworkInfoIPs(), []netip.Addr{netip.MustParseAddr("172.29.1.5")}; !cmp.Equal(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("newest running status IPs %v, want %v", got, want)
	}
	if myapp.Discovery == nil || myapp.Discovery.Ports.Ports[0].Name != "http" {
		t.Errorf("discovery info not decoded: %+v", myapp.Discovery)
	}
	bridged := s.Frameworks[0].Tasks[2]
	if !bridged.HasHostPort() {
		t.Errorf("bridged task: HasHostPort() = false, want true")
	}
	if myapp.HasHostPort() {
		t.Errorf("myapp task: HasHostPort() = true, want false")
	}
	if got := bridged.RunningStatus().LabelIPs(DockerIPLabel); len(got) != 1 || got[0] != netip.MustParseAddr("172.17.0.2") {
		t.Errorf("docker label IPs %v, want [172.17.0.2]", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"empty", ``, "invalid JSON"},
		{"not JSON", `<html>502 Bad Gateway</html>`, "invalid JSON"},
		{"truncated", `{"leader": "master@10.0.0.1:5050", "slaves": [`, "decode Mesos state"},
		{"trailing data", `{"leader": "master@10.0.0.1:5050"} {}`, "invalid JSON"},
		{"no leader", `{"slaves": []}`, "field leader is empty"},
		{"bad leader", `{"leader": "10.0.0.1"}`, `field leader: PID "10.0.0.1" has no '@'`},
		{"wrong type", `{"leader": "master@10.0.0.1:5050", "slaves": {"id": "x"}}`, "field slaves: a JSON object is not a []mesos.Agent"},
		{"wrong nested type", `{"leader": "master@10.0.0.1:5050", "frameworks": [{"tasks": [{"statuses": [{"timestamp": "yesterday"}]}]}]}`, "field frameworks.tasks.statuses.timestamp: a JSON string is not a float64"},
		{"negative port", `{"leader": "master@10.0.0.1:5050", "frameworks": [{"tasks": [{"discovery": {"ports": {"ports": [{"number": -1}]}}}]}]}`, "field frameworks.tasks.discovery.ports.ports.number"},
		{"array", `[]`, "a JSON array is not a mesos.State"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestTaskPorts(t *testing.T) {
	for _, tc := range []struct {
		name, ports string
		want        []uint16
		wantErr     string
	}{
		{"absent", "", nil, ""},
		{"empty list", "[]", nil, ""},
		{"one", "[31000-31000]", []uint16{31000}, ""},
		{"ranges", "[31000-31001, 31005-31005]", []uint16{31000, 31001, 31005}, ""},
		{"single value", "[80]", []uint16{80}, ""},
		{"no brackets", "31000-31001", nil, "is not a range list"},
		{"reversed", "[31001-31000]", nil, `bad range "31001-31000"`},
		{"too big", "[1-70000]", nil, "bad range"},
		{"garbage", "[a-b]", nil, "bad range"},
		{"too many", "[0-65535, 0-1]", nil, "more than 65536 ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := Task{ID: "t1", Resources: Resources{Ports: tc.ports}}
			got, err := task.Ports()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Ports() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Ports() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Ports() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusSelection(t *testing.T) {
	ni := func(ip string) ContainerStatus {
		return ContainerStatus{NetworkInfos: []NetworkInfo{{IPAddresses: []IPAddress{{IPAddress: ip}}}}}
	}
	task := Task{Statuses: []Status{
		{State: TaskRunning, Timestamp: 3, ContainerStatus: ni("10.0.0.3")},
		{State: "TASK_KILLING", Timestamp: 5, ContainerStatus: ni("10.0.0.5")},
		{State: TaskRunning, Timestamp: 4, ContainerStatus: ni("10.0.0.4")},
		{State: TaskRunning, Timestamp: 1, ContainerStatus: ni("10.0.0.1")},
	}}
	if got := task.RunningStatus().NetworkInfoIPs(); len(got) != 1 || got[0].String() != "10.0.0.4" {
		t.Errorf("RunningStatus IPs = %v, want [10.0.0.4]", got)
	}
	if got := task.LatestStatus().NetworkInfoIPs(); len(got) != 1 || got[0].String() != "10.0.0.5" {
		t.Errorf("LatestStatus IPs = %v, want [10.0.0.5]", got)
	}
	var none Task
	if none.RunningStatus() != nil || none.RunningStatus().NetworkInfoIPs() != nil {
		t.Errorf("a task without statuses has a running status")
	}
}

func TestNetworkInfoIPs(t *testing.T) {
	s := Status{ContainerStatus: ContainerStatus{NetworkInfos: []NetworkInfo{
		{IPAddresses: []IPAddress{{IPAddress: "10.0.0.1"}, {IPAddress: "fd00::1"}, {IPAddress: "not-an-ip"}, {}}},
		{IPAddress: "10.0.0.2"}, // Mesos 0.25 form
		{IPAddresses: []IPAddress{{IPAddress: "::ffff:10.0.0.3"}}},
		{IPAddresses: []IPAddress{{IPAddress: "fe80::1%eth0"}}},
	}}}
	got := s.NetworkInfoIPs()
	want := []string{"10.0.0.1", "fd00::1", "10.0.0.2", "10.0.0.3"}
	var gs []string
	for _, ip := range got {
		gs = append(gs, ip.String())
	}
	if diff := cmp.Diff(want, gs); diff != "" {
		t.Errorf("NetworkInfoIPs (-want +got):\n%s", diff)
	}
}

func TestParsePID(t *testing.T) {
	for _, tc := range []struct {
		pid, host string
		port      uint16
		ok        bool
	}{
		{"master@10.0.0.1:5050", "10.0.0.1", 5050, true},
		{"slave(1)@[fd00::1]:5051", "fd00::1", 5051, true},
		{"scheduler-a@b@10.0.0.2:1", "10.0.0.2", 1, true},
		{"master@10.0.0.1", "", 0, false},
		{"master@:5050", "", 0, false},
		{"master@10.0.0.1:99999", "", 0, false},
		{"", "", 0, false},
	} {
		t.Run(tc.pid, func(t *testing.T) {
			h, p, err := ParsePID(tc.pid)
			if (err == nil) != tc.ok || h != tc.host || p != tc.port {
				t.Errorf("ParsePID(%q) = %q, %d, %v; want %q, %d, ok=%v", tc.pid, h, p, err, tc.host, tc.port, tc.ok)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(readFixture(f))
	f.Add([]byte(`{"leader":"master@10.0.0.1:5050","slaves":[{"id":"a-S1","pid":"slave(1)@10.0.0.2:5051"}],"frameworks":[{"name":"m","tasks":[{"id":"t","name":"x","slave_id":"a-S1","state":"TASK_RUNNING","resources":{"ports":"[1-2]"}}]}]}`))
	f.Add([]byte(`{"leader":"x@[::1]:1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err != nil {
			return
		}
		_, _, _ = s.LeaderAddr()
		for _, a := range s.Slaves {
			_, _, _ = a.Addr()
		}
		for _, fw := range s.Frameworks {
			_, _, _ = fw.Addr()
			for _, task := range fw.Tasks {
				_, _ = task.Ports()
				task.RunningStatus().NetworkInfoIPs()
				task.LatestStatus().LabelIPs(MesosIPLabel)
				task.HasHostPort()
			}
		}
	})
}
