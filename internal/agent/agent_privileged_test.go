package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "ip", "ping")
}

// listenIn opens a TCP echo listener inside a namespace.
func listenIn(t *testing.T, nsPath string, addr netip.Addr) net.Listener {
	t.Helper()
	var ln net.Listener
	err := netns.Do(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 8080).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", nsPath, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln
}

// dialFrom connects from inside a namespace and checks the echo.
func dialFrom(nsPath string, to netip.Addr) error {
	return netns.Do(nsPath, func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(to, 8080).String(), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "ping" {
			return fmt.Errorf("echo returned %q", buf)
		}
		return nil
	})
}

func TestPrivilegedAttachTwoContainersTalk(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.77.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	a := h.Attach("net1")
	b := h.Attach("net1")
	pool := netip.MustParsePrefix("10.77.0.0/16")
	if !pool.Contains(a.IP()) || !pool.Contains(b.IP()) || a.IP() == b.IP() {
		t.Fatalf("addresses %s and %s: want two distinct addresses in %s", a.IP(), b.IP(), pool)
	}
	listenIn(t, b.NSPath, b.IP())
	if err := dialFrom(a.NSPath, b.IP()); err != nil {
		t.Fatalf("container %s → %s over TCP: %v", a.IP(), b.IP(), err)
	}
	// The host reaches its containers (health checks need it).
	if out, err := exec.Command("ip", "netns", "exec", h.NS, "ping", "-c1", "-W2", b.IP().String()).CombinedOutput(); err != nil {
		t.Fatalf("host → container ping: %v\n%s", err, out)
	}

	// The endpoint is registered with its labels and profile.
	ctx := context.Background()
	weps, _, err := c.Client.List(ctx, "WorkloadEndpoint", "")
	if err != nil || len(weps) != 2 {
		t.Fatalf("endpoints: %d (%v), want 2", len(weps), err)
	}
	w := weps[0].(*api.WorkloadEndpoint)
	if w.Spec.Node != "node1" || len(w.Spec.Profiles) != 1 || w.Spec.Profiles[0] != "net1" || !strings.HasPrefix(w.Spec.InterfaceName, "tby") {
		t.Fatalf("endpoint spec = %+v", w.Spec)
	}
	if _, err := c.Client.Get(ctx, "Profile", "", "net1"); err != nil {
		t.Fatalf("profile net1 was not created: %v", err)
	}

	// CHECK passes, DEL works twice, and afterwards nothing is left.
	cni := c.CNI()
	rt := agenttest.RuntimeConf(a.ID, a.NSPath, "eth0")
	if err := cni.CheckNetworkList(ctx, h.ConfList("net1", "1.1.0"), rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	for i := range 2 {
		if err := cni.DelNetworkList(ctx, h.ConfList("net1", "1.1.0"), rt); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if err := dialFrom(a.NSPath, b.IP()); err == nil {
		t.Fatal("detached container still reaches its neighbour")
	}
	hostIf := endpoint.HostIfName(a.ID, "eth0")
	if out, _ := exec.Command("ip", "-n", h.NS, "link", "show", hostIf).CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Fatalf("host veth %s still exists after DEL: %s", hostIf, out)
	}
	addrs, err := ipam.New(c.Store, nil).HandleAddrs(ctx, ipam.HandleID("net1", a.ID, "eth0"))
	if err != nil || len(addrs) != 0 {
		t.Fatalf("handle still holds %v (%v) after DEL", addrs, err)
	}
}

func TestPrivilegedDelWithoutNetns(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.78.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	a := h.Attach("net1")
	if err := netns.Delete(a.NS); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// As Mesos after a reboot: no CNI_NETNS at all.
	if err := c.CNI().DelNetworkList(ctx, h.ConfList("net1", "1.1.0"), agenttest.RuntimeConf(a.ID, "", "eth0")); err != nil {
		t.Fatalf("DEL without netns: %v", err)
	}
	rep, err := ipam.New(c.Store, nil).Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("ipam check after DEL: %+v", rep.Problems)
	}
	weps, _, _ := c.Client.List(ctx, "WorkloadEndpoint", "")
	if len(weps) != 0 {
		t.Fatalf("%d endpoints left after DEL", len(weps))
	}
}

func TestPrivilegedConcurrentAdds(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.79.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	const n = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[netip.Addr]string{}
	errs := make(chan error, n)
	for i := range n {
		_, path := c.NewContainerNS()
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("concurrent%02d%s", i, agenttest.RandName(""))
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			res, err := c.CNI().AddNetworkList(ctx, h.ConfList("net1", "1.1.0"), agenttest.RuntimeConf(id, path, "eth0"))
			if err != nil {
				errs <- fmt.Errorf("ADD %d: %w", i, err)
				return
			}
			ips, err := agenttest.ResultIPs(res)
			if err != nil || len(ips) != 1 {
				errs <- fmt.Errorf("ADD %d: result %v (%v)", i, ips, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, dup := seen[ips[0]]; dup {
				errs <- fmt.Errorf("address %s given to %s and %s", ips[0], other, id)
			}
			seen[ips[0]] = id
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != n {
		t.Fatalf("%d distinct addresses, want %d", len(seen), n)
	}
}

func TestPrivilegedAgentCrashDuringAddsReconciles(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.80.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	keep := h.Attach("net1")
	other := h.Attach("net1")
	listenIn(t, other.NSPath, other.IP())

	// Start a burst of ADDs and kill the agent while they run.
	var wg sync.WaitGroup
	for i := range 12 {
		_, path := c.NewContainerNS()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = c.CNI().AddNetworkList(ctx, h.ConfList("net1", "1.1.0"), agenttest.RuntimeConf(fmt.Sprintf("crash%02d", i), path, "eth0"))
		}()
	}
	time.Sleep(150 * time.Millisecond)
	h.Kill()
	wg.Wait()
	// Established containers keep talking while the agent is down …
	if err := dialFrom(keep.NSPath, other.IP()); err != nil {
		t.Fatalf("traffic between containers with the agent down: %v", err)
	}
	// … and after it restarts and reconciles.
	h.Start()
	if err := dialFrom(keep.NSPath, other.IP()); err != nil {
		t.Fatalf("traffic between containers after agent restart: %v", err)
	}
	// The runtime cleans up the ADDs that failed (as Mesos/containerd do);
	// whatever the crash left half-done is gone after reconcile + DEL.
	ctx := context.Background()
	for i := range 12 {
		_ = c.CNI().DelNetworkList(ctx, h.ConfList("net1", "1.1.0"), agenttest.RuntimeConf(fmt.Sprintf("crash%02d", i), "", "eth0"))
	}
	rep, err := ipam.New(c.Store, nil).Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("ipam check: %+v", rep.Problems)
	}
	out, _ := exec.Command("ip", "-n", h.NS, "-o", "link", "show").CombinedOutput()
	if n := strings.Count(string(out), " tby"); n != 2 {
		t.Fatalf("%d tby veths on the host, want 2 (the live containers):\n%s", n, out)
	}
}

// TestPrivilegedMesos sends exactly what Mesos' network/cni isolator sends:
// a 0.1.0-less config with args["org.apache.mesos"], no CNI_ARGS, a UUID
// container ID; it must get the 0.2.0 result shape and a labelled endpoint.
func TestPrivilegedMesos(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.81.0.0/16")
	h := c.StartHost("agent1", "10.200.0.1/24")
	_, path := c.NewContainerNS()
	cid := "2a7c3e5b-9f0d-4e8a-8b1c-0d6f4a2e9c71"
	conf := fmt.Sprintf(`{"name":"calico","type":"tabby","agent_socket":%q,"ipam":{"type":"tabby-ipam"},
 "args":{"org.apache.mesos":{"network_info":{"name":"calico","labels":{"labels":[{"key":"app","value":"frontend"},{"key":"group","value":"production"}]},
 "port_mappings":[{"host_port":31000,"container_port":80,"protocol":"tcp"}],"ip_addresses":[{}]}}}}`, h.Socket)
	cmd := exec.Command(c.Bin + "/tabby-cni")
	cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + cid, "CNI_NETNS=" + path, "CNI_IFNAME=eth0", "CNI_PATH=" + c.CNIDir(), "PATH=/usr/bin:/bin"}
	cmd.Stdin = strings.NewReader(conf)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Mesos ADD: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"ip4"`) || strings.Contains(string(out), `"ips"`) {
		t.Fatalf("Mesos ADD result is not the 0.2.0 shape:\n%s", out)
	}
	ctx := context.Background()
	weps, _, err := c.Client.List(ctx, "WorkloadEndpoint", "")
	if err != nil || len(weps) != 1 {
		t.Fatalf("endpoints: %v %v", weps, err)
	}
	w := weps[0].(*api.WorkloadEndpoint)
	if w.Labels["app"] != "frontend" || w.Labels["group"] != "production" || w.Spec.Workload != cid {
		t.Fatalf("endpoint labels %v workload %q", w.Labels, w.Spec.Workload)
	}
	if len(w.Spec.Ports) != 1 || w.Spec.Ports[0].HostPort != 31000 || w.Spec.Ports[0].Port != 80 {
		t.Fatalf("endpoint ports %+v, want 31000→80", w.Spec.Ports)
	}
	// DEL with the ADD-time stdin and no CNI_NETNS (after a reboot).
	del := exec.Command(c.Bin + "/tabby-cni")
	del.Env = []string{"CNI_COMMAND=DEL", "CNI_CONTAINERID=" + cid, "CNI_IFNAME=eth0", "CNI_PATH=" + c.CNIDir()}
	del.Stdin = strings.NewReader(conf)
	if out, err := del.CombinedOutput(); err != nil {
		t.Fatalf("Mesos DEL: %v\n%s", err, out)
	}
	rep, err := ipam.New(c.Store, nil).Check(ctx, nil)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("ipam check after Mesos DEL: %+v %v", rep, err)
	}
}

// TestPrivilegedEveryVersion runs ADD/CHECK/DEL through libcni for every
// CNI version the plugin supports.
func TestPrivilegedEveryVersion(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.82.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	everyVersion(t, c, h, func(string, types.Result) error { return nil })
}

// TestPrivilegedEveryVersionDualStack: with an IPv4 and an IPv6 pool and
// no assign_ipv4/assign_ipv6 in the config, one ADD gets both addresses
// and every result version carries both (0.1.0 and 0.2.0 as ip4 and ip6;
// later ones in ips), CHECK included.
func TestPrivilegedEveryVersionDualStack(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.83.0.0/16")
	c.Apply(&api.IPPool{ObjectMeta: api.ObjectMeta{Name: "default-v6"}, Spec: api.IPPoolSpec{CIDR: "fd00:83::/112"}})
	h := c.StartHost("node1", "10.200.0.1/24")
	everyVersion(t, c, h, func(v string, res types.Result) error {
		ips, err := agenttest.ResultIPs(res)
		if err != nil {
			return err
		}
		if len(ips) != 2 || !ips[0].Is4() || !netip.MustParsePrefix("fd00:83::/112").Contains(ips[1]) {
			return fmt.Errorf("result %s has addresses %v, want one of 10.83.0.0/16 and one of fd00:83::/112", v, ips)
		}
		return nil
	})
}

// everyVersion runs ADD (CHECK from 0.4.0) and DEL through libcni in every
// CNI version on host h; check judges each ADD's result.
func everyVersion(t *testing.T, c *agenttest.Cluster, h *agenttest.Host, check func(v string, res types.Result) error) {
	ctx := context.Background()
	for _, v := range []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			_, path := c.NewContainerNS()
			id := agenttest.RandName("v")
			rt := agenttest.RuntimeConf(id, path, "eth0")
			cni := c.CNI()
			if v < "0.3.0" {
				conf, err := libcni.NetworkPluginConfFromBytes(h.NetConf("net1", v))
				if err != nil {
					t.Fatal(err)
				}
				res, err := cni.AddNetwork(ctx, conf, rt)
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				if res.Version() != v {
					t.Fatalf("result version %s, want %s", res.Version(), v)
				}
				if err := check(v, res); err != nil {
					t.Error(err)
				}
				if err := cni.DelNetwork(ctx, conf, rt); err != nil {
					t.Fatalf("DEL: %v", err)
				}
				return
			}
			b := fmt.Sprintf(`{"cniVersion":%q,"name":"net1","plugins":[{"type":"tabby","agent_socket":%q,"ipam":{"type":"tabby-ipam"}}]}`, v, h.Socket)
			list, err := libcni.ConfListFromBytes([]byte(b))
			if err != nil {
				t.Fatal(err)
			}
			res, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if res.Version() != v {
				t.Fatalf("result version %s, want %s", res.Version(), v)
			}
			if err := check(v, res); err != nil {
				t.Error(err)
			}
			if v >= "0.4.0" {
				if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			if err := cni.DelNetworkList(ctx, list, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
}

// TestPrivilegedGC: CNI 1.1 GC removes attachments the runtime no longer has.
func TestPrivilegedGC(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.83.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	keep := h.Attach("net1")
	gone := h.Attach("net1")
	ctx := context.Background()
	err := c.CNI().GCNetworkList(ctx, h.ConfList("net1", "1.1.0"), &libcni.GCArgs{
		ValidAttachments: []types.GCAttachment{{ContainerID: keep.ID, IfName: "eth0"}},
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	m := ipam.New(c.Store, nil)
	if addrs, _ := m.HandleAddrs(ctx, ipam.HandleID("net1", gone.ID, "eth0")); len(addrs) != 0 {
		t.Fatalf("GC left %v allocated to the gone attachment", addrs)
	}
	if addrs, _ := m.HandleAddrs(ctx, ipam.HandleID("net1", keep.ID, "eth0")); len(addrs) != 1 {
		t.Fatalf("GC released the valid attachment's address (now %v)", addrs)
	}
	if out, _ := exec.Command("ip", "-n", h.NS, "link", "show", endpoint.HostIfName(gone.ID, "eth0")).CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Fatalf("GC left the gone attachment's veth: %s", out)
	}
}

// TestPrivilegedSocketRefusesNonRoot: even with the socket's mode opened
// up, a non-root caller gets no answer.
func TestPrivilegedSocketRefusesNonRoot(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.84.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	if err := os.Chmod(h.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	// Let the test user reach the socket file itself.
	for _, d := range []string{filepath.Dir(h.Socket), filepath.Dir(filepath.Dir(h.Socket))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(c.Bin, "tabby-cni"))
	cmd.Env = []string{"CNI_COMMAND=STATUS", "CNI_PATH=" + c.CNIDir()}
	cmd.Stdin = strings.NewReader(string(h.NetConf("net1", "1.1.0")))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err == nil {
		t.Fatalf("a non-root caller got an answer from the agent: %s", out)
	}
	if !strings.Contains(string(out), `"code": 11`) && !strings.Contains(string(out), `"code": 50`) {
		t.Fatalf("non-root STATUS output %s: want a CNI error", out)
	}
	// Root still gets through.
	if !h.Ready() {
		t.Fatal("root caller refused")
	}
}

// TestPrivilegedReAddAndUndo: ADD of the same attachment again returns the
// same address; an ADD that fails part-way (the netns vanished) leaves
// nothing behind; Kubernetes CNI_ARGS name the endpoint's namespace.
func TestPrivilegedReAddAndUndo(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.85.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	ctx := context.Background()
	m := ipam.New(c.Store, nil)

	a := h.Attach("net1")
	rt := agenttest.RuntimeConf(a.ID, a.NSPath, "eth0")
	// libcni's cache would answer a repeated ADD itself: call the plugin.
	out, err := h.Exec("ADD", a.ID, a.NSPath, "eth0", h.NetConf("net1", "1.1.0"))
	if err != nil {
		t.Fatalf("second ADD: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), a.IP().String()+"/32") {
		t.Fatalf("second ADD returned %s, want the same address %s", out, a.IP())
	}
	if err := c.CNI().CheckNetworkList(ctx, h.ConfList("net1", "1.1.0"), rt); err != nil {
		t.Fatalf("CHECK after re-ADD: %v", err)
	}

	// A netns path that is not a namespace: ADD fails after IPAM; undo.
	bogus := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(bogus, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Exec("ADD", "failing1", bogus, "eth0", h.NetConf("net1", "1.1.0")); err == nil {
		t.Fatalf("ADD into a non-namespace succeeded: %s", out)
	}
	if addrs, _ := m.HandleAddrs(ctx, ipam.HandleID("net1", "failing1", "eth0")); len(addrs) != 0 {
		t.Fatalf("failed ADD kept %v", addrs)
	}
	if _, err := c.Client.Get(ctx, "WorkloadEndpoint", "default", "node1-cni-failing1-eth0"); err == nil {
		t.Fatal("failed ADD left its endpoint")
	}
	if out, _ := exec.Command("ip", "-n", h.NS, "link", "show", endpoint.HostIfName("failing1", "eth0")).CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Fatalf("failed ADD left its veth: %s", out)
	}

	// Kubernetes args: the pod's namespace and name.
	_, kpath := c.NewContainerNS()
	k8s := &libcni.RuntimeConf{ContainerID: "k8scontainer1", NetNS: kpath, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "shop"}, {"K8S_POD_NAME", "web-0"}}}
	if _, err := c.CNI().AddNetworkList(ctx, h.ConfList("net1", "1.1.0"), k8s); err != nil {
		t.Fatalf("k8s ADD: %v", err)
	}
	r, err := c.Client.Get(ctx, "WorkloadEndpoint", "shop", "node1-k8s-web--0-eth0")
	if err != nil {
		t.Fatalf("k8s endpoint: %v", err)
	}
	w := r.(*api.WorkloadEndpoint)
	if w.Spec.Orchestrator != "k8s" || w.Spec.Workload != "web-0" || w.Labels["projectcalico.org/namespace"] != "shop" {
		t.Fatalf("k8s endpoint %+v labels %v", w.Spec, w.Labels)
	}
}
