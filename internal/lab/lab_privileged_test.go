package lab

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/dns/mesos"
)

func TestPrivilegedUpDownRepeated(t *testing.T) {
	requireRoot(t)
	name := uniqueName("ud")
	for i := range 3 {
		l := upLab(t, Config{Name: name, Nodes: 2, Racks: 2, Encap: "vxlan-crosssubnet"})
		st := l.State()
		if st.Router == nil {
			t.Fatalf("round %d: two racks but no router", i)
		}
		for _, n := range l.Nodes() {
			if !n.Running {
				t.Errorf("round %d: the agent of %s is not running", i, n.Name)
			}
		}
		// h2 is in rack 2: it reaches the master's datastore through the router.
		h2, _ := st.Host("h2")
		if h2.Rack != 2 {
			t.Fatalf("round %d: h2 in rack %d, want 2", i, h2.Rack)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := DialIn(ctx, h2.Namespace, "tcp4", netip.AddrPortFrom(st.Master.IP.Addr(), EtcdPort).String())
		cancel()
		if err != nil {
			t.Fatalf("round %d: h2 cannot reach the datastore across racks: %v", i, err)
		}
		c.Close()
		// The root namespace reaches the datastore through the socket, and
		// the default pool has the encapsulation asked for.
		s, err := l.Store()
		if err != nil {
			t.Fatal(err)
		}
		r, err := datastore.NewClient(s).Get(context.Background(), "IPPool", "", PoolName)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if p := r.(*api.IPPool).Spec; p.CIDR != DefaultPool.String() || p.VXLANMode != api.EncapCrossSubnet || p.IPIPMode != api.EncapNever {
			t.Errorf("round %d: pool: got %+v, want %s with vxlanMode CrossSubnet", i, p, DefaultPool)
		}
		downLab(t, l)
	}
}

func TestPrivilegedTwoLabs(t *testing.T) {
	requireRoot(t)
	names := []string{uniqueName("ta"), uniqueName("tb")}
	labs := make([]*Lab, 2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	testBinaries(t)
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Up(context.Background(), Config{Name: n, Nodes: 2, BinDir: testBinaries(t), Logger: testLogger(t)})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			labs[i] = l
		}()
	}
	wg.Wait()
	for _, l := range labs {
		if l != nil {
			t.Cleanup(func() { downLab(t, l) })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if labs[0].State().Index == labs[1].State().Index {
		t.Errorf("both labs have fabric index %d, want distinct ones", labs[0].State().Index)
	}
	list, err := List("")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, s := range list {
		if s.Name == names[0] || s.Name == names[1] {
			found++
		}
	}
	if found != 2 {
		t.Errorf("lab list: found %d of the two labs in %+v", found, list)
	}
	// Each lab has its own datastore.
	sa, err := labs[0].Store()
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	sb, err := labs[1].Store()
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ctx := context.Background()
	if _, err := sa.Create(ctx, "/tabby/v1/test/only-in-a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Get(ctx, "/tabby/v1/test/only-in-a"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("lab b reads lab a's key: got %v, want ErrNotFound", err)
	}
	downLab(t, labs[0])
	// Taking one lab down leaves the other working.
	for _, n := range labs[1].Nodes() {
		if !n.Running {
			t.Errorf("lab b after lab a went down: the agent of %s is not running", n.Name)
		}
	}
}

func TestPrivilegedContainers(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("ct"), Nodes: 3, DNS: testDNS})
	ctx := context.Background()
	run := func(spec RunSpec) *Container { t.Helper(); return mustRun(t, l, spec) }
	a1 := run(RunSpec{Name: "a1", Node: "h1", Labels: []KeyValue{{"app", "web"}}})
	a2 := run(RunSpec{Name: "a2", Node: "h1"})
	b := run(RunSpec{Name: "b", Node: "h2", MesosApp: "/prod/db", Labels: []KeyValue{{"group", "dev"}}})
	c := run(RunSpec{Name: "c", Node: "h3", Namespace: "ns1"})

	// Unique addresses from the pool.
	seen := map[netip.Addr]string{}
	for _, ct := range []*Container{a1, a2, b, c} {
		ip := ct.IP()
		if !DefaultPool.Contains(ip) {
			t.Errorf("%s: address %s is not in the pool %s", ct.Name, ip, DefaultPool)
		}
		if o, dup := seen[ip]; dup {
			t.Errorf("%s and %s share %s", ct.Name, o, ip)
		}
		seen[ip] = ct.Name
		if !l.Running(ct.Name) {
			t.Errorf("%s: its command does not run", ct.Name)
		}
	}

	// A container reaches another on its host; every host reaches its
	// containers (as health checks do).
	portA2 := serveIn(t, a2.NetNS)
	reach(t, a1.NetNS, netip.AddrPortFrom(a2.IP(), uint16(portA2)))
	for _, ct := range []*Container{a1, b, c} {
		port := serveIn(t, ct.NetNS)
		h, _ := l.State().Host(ct.Node)
		reach(t, h.Namespace, netip.AddrPortFrom(ct.IP(), uint16(port)))
	}

	// exec: stdio and the exit code pass through; resolv.conf comes from
	// the CNI result's dns (the master, which runs tabby dns).
	cmd, err := l.ContainerCommand(ctx, "b", []string{"sh", "-c", "cat /etc/resolv.conf; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exec exit: got %v, want exit status 3", err)
	}
	if want := "nameserver " + l.State().Master.IP.Addr().String(); !strings.Contains(string(out), want) {
		t.Errorf("resolv.conf in b: got %q, want a line %q", out, want)
	}

	// Mesos: the checkpointed stdin is a 0.1.0 config with the Mesos args,
	// and the plugin answered with a 0.2-shaped result.
	cp, err := os.ReadFile(l.mesosCheckpoint(b))
	if err != nil {
		t.Fatal(err)
	}
	var stdin struct {
		CNIVersion string `json:"cniVersion"`
		Args       map[string]struct {
			NetworkInfo struct {
				Name   string `json:"name"`
				Labels struct {
					Labels []KeyValue `json:"labels"`
				} `json:"labels"`
			} `json:"network_info"`
		} `json:"args"`
	}
	if err := json.Unmarshal(cp, &stdin); err != nil {
		t.Fatal(err)
	}
	ni := stdin.Args[MesosArgsKey].NetworkInfo
	if stdin.CNIVersion != MesosCNIVersion || ni.Name != DefaultNetwork || len(ni.Labels.Labels) != 1 || ni.Labels.Labels[0] != (KeyValue{"group", "dev"}) {
		t.Errorf("Mesos stdin: got %s", cp)
	}
	info, err := os.ReadFile(filepath.Join(filepath.Dir(l.mesosCheckpoint(b)), "eth0", "network.info"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(info), `"ip4"`) || strings.Contains(string(info), `"ips"`) {
		t.Errorf("Mesos result: got %s, want a 0.2 result (ip4, never ips)", info)
	}

	// The datastore has the endpoints, as the runtimes described them.
	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	weps, _, err := datastore.NewClient(s).List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		t.Fatal(err)
	}
	byIP := map[string]*api.WorkloadEndpoint{}
	for _, r := range weps {
		w := r.(*api.WorkloadEndpoint)
		for _, n := range w.Spec.IPNetworks {
			byIP[strings.TrimSuffix(n, "/32")] = w
		}
	}
	if w := byIP[b.IP().String()]; w == nil || w.Spec.Orchestrator != "mesos" || w.Spec.ContainerID != b.ContainerID || w.Labels["group"] != "dev" {
		t.Errorf("endpoint of b: got %+v, want orchestrator mesos, container %s, label group=dev", w, b.ContainerID)
	}
	if w := byIP[c.IP().String()]; w == nil || w.Namespace != "ns1" {
		t.Errorf("endpoint of c: got %+v, want namespace ns1", w)
	}
	if w := byIP[a1.IP().String()]; w == nil || w.Labels["app"] != "web" {
		t.Errorf("endpoint of a1: got %+v, want label app=web", w)
	}

	// The lab as Mesos master: b is a running Marathon task with its IP.
	resp, err := HTTPClientIn(l.State().Master.Namespace).Get(l.State().MesosMasterURL() + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ms, err := mesos.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.Frameworks) != 1 || len(ms.Frameworks[0].Tasks) != 1 {
		t.Fatalf("master state: got %s, want one marathon task", body)
	}
	task := ms.Frameworks[0].Tasks[0]
	if rs := task.RunningStatus(); task.Name != "db.prod" || rs == nil || rs.ContainerStatus.NetworkInfos[0].IPAddresses[0].IPAddress != b.IP().String() {
		t.Errorf("task: got %+v, want db.prod running with %s", task, b.IP())
	}

	// DNS on the master resolves the task, as hosts ask it.
	h1, _ := l.State().Host("h1")
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return DialIn(ctx, h1.Namespace, network, netip.AddrPortFrom(l.State().Master.IP.Addr(), 53).String())
	}}
	var addrs []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err = resolver.LookupHost(rctx, "db.prod.marathon.mesos")
		cancel()
		if err == nil && len(addrs) == 1 && addrs[0] == b.IP().String() {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(addrs) != 1 || addrs[0] != b.IP().String() {
		t.Errorf("db.prod.marathon.mesos from h1: got %v (%v), want %s", addrs, err, b.IP())
	}

	// Bad input: nothing half-built.
	if _, err := l.Run(ctx, RunSpec{Name: "a1", Node: "h2", Command: []string{"true"}}); err == nil || !strings.Contains(err.Error(), `container "a1" exists already`) {
		t.Errorf("duplicate name: got %v, want an error saying a1 exists", err)
	}
	if _, err := l.Run(ctx, RunSpec{Name: "z", Node: "h9", Command: []string{"true"}}); err == nil || !strings.Contains(err.Error(), `no host "h9"`) {
		t.Errorf("unknown node: got %v, want an error naming h9", err)
	}
	if _, err := l.Run(ctx, RunSpec{Name: "z", Node: "master", Command: []string{"true"}}); err == nil {
		t.Errorf("container on the master: got no error, want one")
	}
	if _, err := l.Run(ctx, RunSpec{Name: "z", Node: "h1", Command: []string{"no-such-command-here"}}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing command: got %v, want not found", err)
	}
	if err := l.Remove(ctx, "nope", false); err == nil || !strings.Contains(err.Error(), `no container "nope"`) {
		t.Errorf("remove unknown: got %v, want an error naming it", err)
	}
	if _, err := os.Stat(nsPath(ContainerNamespace(l.Name(), "z"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed run left namespace %s", ContainerNamespace(l.Name(), "z"))
	}

	// rm: CNI DEL releases the endpoint, the namespace goes.
	if err := l.Remove(ctx, "b", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(nsPath(b.NetNS)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s still exists after rm", b.NetNS)
	}
	if _, err := os.Stat(filepath.Join(EtcNetnsDir, b.NetNS)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/etc/netns/%s still exists after rm", b.NetNS)
	}
	if len(mountsUnder(filepath.Join(l.Dir(), "h2", "mesos-cni"))) != 0 {
		t.Errorf("the Mesos netns handle of b is still mounted after rm")
	}
	weps, _, _ = datastore.NewClient(s).List(ctx, "WorkloadEndpoint", "")
	for _, r := range weps {
		if r.(*api.WorkloadEndpoint).Spec.ContainerID == b.ContainerID {
			t.Errorf("the endpoint of b survived rm")
		}
	}
	cs, _ := l.Containers()
	if len(cs) != 3 {
		t.Errorf("containers after rm: got %d, want 3", len(cs))
	}
}

func TestPrivilegedAgentRestart(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("ar"), Nodes: 2})
	ctx := context.Background()
	var cs []*Container
	for _, n := range []string{"x1", "x2"} {
		c, err := l.Run(ctx, RunSpec{Name: n, Node: "h1", Command: []string{"sleep", "infinity"}})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	h1, _ := l.State().Host("h1")
	port := serveIn(t, cs[1].NetNS)
	to := netip.AddrPortFrom(cs[1].IP(), uint16(port))
	check := func(when string) {
		t.Helper()
		t.Logf("%s: checking connectivity", when)
		reach(t, cs[0].NetNS, to)
		reach(t, h1.Namespace, to)
	}
	check("before")
	if err := l.StopAgent("h1", true); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes() {
		if n.Name == "h1" && n.Running {
			t.Fatalf("the agent of h1 still runs after kill")
		}
	}
	check("agent killed")
	if err := l.StartAgent(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	check("agent restarted")
	x3, err := l.Run(ctx, RunSpec{Name: "x3", Node: "h1", Command: []string{"sleep", "infinity"}})
	if err != nil {
		t.Fatal(err)
	}
	if x3.IP() == cs[0].IP() || x3.IP() == cs[1].IP() {
		t.Errorf("x3 got %s, an address already in use", x3.IP())
	}
	reach(t, x3.NetNS, to)
	if err := l.StartAgent(ctx, "h1"); err == nil {
		t.Errorf("start of a running agent: got no error, want one")
	}
	if err := l.StopAgent("h7", false); err == nil {
		t.Errorf("stop of an unknown node's agent: got no error, want one")
	}
}

func TestPrivilegedBadInput(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	bin := testBinaries(t)

	if _, err := Open("", uniqueName("no")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("open unknown lab: got %v, want does not exist", err)
	}
	if err := Down(ctx, "", uniqueName("no"), nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("down unknown lab: got %v, want does not exist", err)
	}

	name := uniqueName("bi")
	_, err := Up(ctx, Config{Name: name, BinDir: bin, Pool: netip.MustParsePrefix("10.101.0.0/16")})
	if err == nil || !strings.Contains(err.Error(), "overlaps the lab fabric") {
		t.Errorf("pool on the fabric: got %v, want an overlap error", err)
	}
	assertNoLeftovers(t, name, DefaultStateRoot, nil)

	// A lab whose agents cannot start: up fails, quotes the agent's log
	// and leaves nothing behind.
	fake := t.TempDir()
	script := "#!/bin/sh\nif [ \"$1\" = agent ]; then echo 'agent refuses to start' >&2; exit 1; fi\nexec " + filepath.Join(bin, "tabby") + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(fake, "tabby"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(bin, "tabby-cni"), filepath.Join(fake, "tabby-cni")); err != nil {
		t.Fatal(err)
	}
	_, err = Up(ctx, Config{Name: name, Nodes: 2, BinDir: fake, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "agent refuses to start") {
		t.Errorf("failing agents: got %v, want the agent's log in the error", err)
	}
	assertNoLeftovers(t, name, DefaultStateRoot, nil)

	// The same name twice: the second up fails, the first lab is intact.
	l := upLab(t, Config{Name: name, Nodes: 1})
	if _, err := Up(ctx, Config{Name: name, Nodes: 1, BinDir: bin}); err == nil || !strings.Contains(err.Error(), "exist") {
		t.Errorf("second up: got %v, want an error saying the lab exists", err)
	}
	for _, n := range l.Nodes() {
		if !n.Running {
			t.Errorf("after a failed second up: the agent of %s is not running", n.Name)
		}
	}
	if _, err := Open("", name); err != nil {
		t.Errorf("after a failed second up: %v", err)
	}
	if _, err := l.Run(ctx, RunSpec{Name: "Bad_Name", Node: "h1", Command: []string{"true"}}); err == nil {
		t.Errorf("bad container name: got no error, want one")
	}
}
