package lab

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/dns/mesos"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixtureState is a 2-host lab with three containers: a Marathon task
// running on h2, one whose command exited, and a plain CNI container.
func fixtureState(t *testing.T) (*State, []Container) {
	t.Helper()
	created := time.Date(2017, 7, 18, 10, 0, 0, 0, time.UTC)
	p, err := MakePlan(Config{Name: "demo", Nodes: 2, Racks: 1, BinDir: "/b"}.WithDefaults(), 1, "8d1c2f3e-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatal(err)
	}
	st := &State{Plan: *p, Phase: PhaseReady, Created: created, Nodes: 2, NRacks: 1, Pool: DefaultPool, Encap: "none"}
	cs := []Container{
		{
			Name: "web", Node: "h2", Namespace: "default", Network: "tabby", Phase: PhaseRunning,
			ContainerID: "c0ffee00-0000-4000-8000-000000000002", IfName: "eth0",
			IPs: []netip.Prefix{netip.MustParsePrefix("10.244.28.128/32")}, Created: created.Add(time.Minute),
			Mesos: &MarathonTask{App: "/prod/web", TaskID: "prod_web.5f1e", TaskName: "web.prod", SlaveID: p.Hosts[1].ID,
				NetworkLabels: []KeyValue{{"app", "web"}}},
		},
		{
			Name: "gone", Node: "h1", Namespace: "default", Network: "tabby", Phase: PhaseRunning,
			ContainerID: "c0ffee00-0000-4000-8000-000000000003", IfName: "eth0",
			IPs: []netip.Prefix{netip.MustParsePrefix("10.244.90.192/32")}, Created: created.Add(2 * time.Minute),
			Mesos: &MarathonTask{App: "/gone", TaskID: "gone.77", TaskName: "gone", SlaveID: p.Hosts[0].ID},
		},
		{
			Name: "plain", Node: "h1", Namespace: "default", Network: "tabby", Phase: PhaseRunning,
			ContainerID: "abc", IfName: "eth0", IPs: []netip.Prefix{netip.MustParsePrefix("10.244.90.193/32")},
		},
	}
	return st, cs
}

func TestBuildMasterState(t *testing.T) {
	st, cs := fixtureState(t)
	running := func(c Container) bool { return c.Name != "gone" }
	ms := BuildMasterState(st, cs, running, st.Created.Add(time.Hour))
	got, err := json.MarshalIndent(ms, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "master-state.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("master state (-golden +got; go test -update rewrites):\n%s", d)
	}
}

// The state must read the way Tabby's DNS (Mesos-DNS semantics) reads a
// real master's: leader, agents by PID, Marathon tasks with their IPs.
func TestMasterStateDecodes(t *testing.T) {
	st, cs := fixtureState(t)
	ms := BuildMasterState(st, cs, func(c Container) bool { return c.Name != "gone" }, time.Now())
	data, err := json.Marshal(ms)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesos.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if ip, port, err := s.LeaderAddr(); err != nil || ip.String() != "10.101.1.2" || port != 5050 {
		t.Errorf("leader: got %s:%d %v, want 10.101.1.2:5050", ip, port, err)
	}
	if len(s.Slaves) != 2 {
		t.Fatalf("slaves: got %d, want 2", len(s.Slaves))
	}
	if ip, _, err := s.Slaves[1].Addr(); err != nil || ip.String() != "10.101.1.12" {
		t.Errorf("slave h2: got %s %v, want 10.101.1.12", ip, err)
	}
	if len(s.Frameworks) != 1 || s.Frameworks[0].Name != "marathon" {
		t.Fatalf("frameworks: got %+v, want marathon", s.Frameworks)
	}
	tasks := s.Frameworks[0].Tasks
	if len(tasks) != 1 {
		t.Fatalf("tasks: got %d, want 1 (the exited one is completed, the plain container no task)", len(tasks))
	}
	tk := tasks[0]
	if tk.Name != "web.prod" || tk.ID != "prod_web.5f1e" || tk.State != mesos.TaskRunning || tk.SlaveID != st.Hosts[1].ID {
		t.Errorf("task: got %+v", tk)
	}
	rs := tk.RunningStatus()
	if rs == nil || len(rs.ContainerStatus.NetworkInfos) != 1 || rs.ContainerStatus.NetworkInfos[0].IPAddresses[0].IPAddress != "10.244.28.128" {
		t.Errorf("running status: got %+v, want network_infos[0].ip_addresses[0].ip_address 10.244.28.128", rs)
	}
	if ip, _, ok := s.Frameworks[0].Addr(); !ok || ip.String() != "10.101.1.2" {
		t.Errorf("framework address: got %s %v, want the master", ip, ok)
	}
}

func TestMesosMasterHandler(t *testing.T) {
	st, cs := fixtureState(t)
	dir := t.TempDir()
	if err := writeJSON(filepath.Join(dir, labFile), st); err != nil {
		t.Fatal(err)
	}
	if err := writeContainers(layout{dir}, cs); err != nil {
		t.Fatal(err)
	}
	m, err := NewMesosMaster(MesosMasterConfig{StateDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	for _, path := range []string{"/master/state", "/state.json", "/master/state.json"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: got %s, want 200", path, resp.Status)
		}
		s, err := mesos.Decode(body)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		// No pid files: no command runs, so no task is running.
		if n := len(s.Frameworks[0].Tasks); n != 0 {
			t.Errorf("%s: running tasks: got %d, want 0", path, n)
		}
		if !bytes.Contains(body, []byte(`"completed_tasks":[{`)) {
			t.Errorf("%s: want the stopped tasks under completed_tasks, got %s", path, body)
		}
	}
	if _, err := NewMesosMaster(MesosMasterConfig{StateDir: dir, Listen: "nowhere"}); err == nil {
		t.Errorf("listen nowhere: got no error, want one")
	}
}
