package agent_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/netns"
)

// agentMetric reads one metric from the agent's /metrics, inside its host
// namespace (the socket is opened there; the request is plain HTTP/1.0).
func agentMetric(t *testing.T, h *agenttest.Host, name string) float64 {
	t.Helper()
	var conn net.Conn
	if err := netns.Do(h.NSPath, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9099", 3*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial the agent's metrics: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s = %q: %v", name, v, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not served (%v)", name, sc.Err())
	return 0
}

// endpointGone reports whether the container's endpoint is deleted and its
// handle holds no address.
func endpointGone(ctx context.Context, c *agenttest.Cluster, ct *agenttest.Container, w *api.WorkloadEndpoint) (bool, error) {
	_, err := c.Client.Get(ctx, "WorkloadEndpoint", w.Namespace, w.Name)
	if err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return false, err
	}
	addrs, herr := ipam.New(c.Store, nil).HandleAddrs(ctx, ipam.HandleID("net1", ct.ID, "eth0"))
	if herr != nil {
		return false, herr
	}
	return err != nil && len(addrs) == 0, nil
}

// endpointOf finds the container's WorkloadEndpoint.
func endpointOf(t *testing.T, c *agenttest.Cluster, ct *agenttest.Container) *api.WorkloadEndpoint {
	t.Helper()
	weps, _, err := c.Client.List(context.Background(), "WorkloadEndpoint", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range weps {
		if w := r.(*api.WorkloadEndpoint); w.Spec.ContainerID == ct.ID {
			return w
		}
	}
	t.Fatalf("no endpoint for container %s", ct.ID)
	return nil
}

// TestPrivilegedDeadContainerReaped: a container whose namespace is deleted
// without CNI DEL loses its endpoint and address on the live agent; its
// neighbours keep talking; the runtime's late DEL succeeds as a no-op.
func TestPrivilegedDeadContainerReaped(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.91.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	a, b, dead := h.Attach("net1"), h.Attach("net1"), h.Attach("net1")
	w := endpointOf(t, c, dead)
	if w.Spec.NetNS != dead.NSPath {
		t.Fatalf("endpoint netns = %q, want the ADD's %q", w.Spec.NetNS, dead.NSPath)
	}
	listenIn(t, b.NSPath, b.IP())

	// The container dies: its namespace goes, no DEL comes.
	start := time.Now()
	if err := netns.Delete(dead.NS); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		gone, err := endpointGone(ctx, c, dead, w)
		if err != nil {
			t.Fatal(err)
		}
		if gone {
			t.Logf("endpoint and address gone %v after the namespace was deleted", time.Since(start).Round(10*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after its namespace was deleted, the dead container's endpoint or address is still there")
		}
		if err := dialFrom(a.NSPath, b.IP()); err != nil {
			t.Fatalf("neighbours' traffic while the dead container is pending: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := dialFrom(a.NSPath, b.IP()); err != nil {
		t.Fatalf("neighbours' traffic after the dead container was removed: %v", err)
	}
	if got := agentMetric(t, h, "tabby_agent_dead_endpoints_reaped_total"); got != 1 {
		t.Errorf("tabby_agent_dead_endpoints_reaped_total = %v, want 1", got)
	}
	for _, live := range []*agenttest.Container{a, b} {
		if addrs, _ := ipam.New(c.Store, nil).HandleAddrs(ctx, ipam.HandleID("net1", live.ID, "eth0")); len(addrs) != 1 {
			t.Errorf("live container %s holds %v, want its one address", live.ID, addrs)
		}
	}
	// The runtime's DEL, late, with the namespace it remembers.
	if err := dead.Detach(); err != nil {
		t.Fatalf("late DEL of the reaped container: %v", err)
	}
	rep, err := ipam.New(c.Store, nil).Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("ipam check: %+v", rep.Problems)
	}
}

// TestPrivilegedVethDeletedContainerKept: an operator deletes a running
// container's host veth. The container is not dead: after well over the
// grace period its endpoint and address are there, the agent reports it,
// CHECK fails; DEL then removes it.
func TestPrivilegedVethDeletedContainerKept(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.92.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24", "--dead-endpoint-sweep", "1s")
	ct := h.Attach("net1")
	w := endpointOf(t, c, ct)
	hostIf := endpoint.HostIfName(ct.ID, "eth0")
	if out, err := exec.Command("ip", "-n", h.NS, "link", "del", hostIf).CombinedOutput(); err != nil {
		t.Fatalf("delete the veth: %v %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for agentMetric(t, h, "tabby_agent_broken_endpoints") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after its veth was deleted, the agent does not report the endpoint as broken")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx := context.Background()
	if gone, err := endpointGone(ctx, c, ct, w); err != nil || gone {
		t.Fatalf("a live container's endpoint or address was removed (gone %v, %v)", gone, err)
	}
	if addrs, _ := ipam.New(c.Store, nil).HandleAddrs(ctx, ipam.HandleID("net1", ct.ID, "eth0")); len(addrs) != 1 || addrs[0] != ct.IP() {
		t.Fatalf("the live container holds %v, want %s", addrs, ct.IP())
	}
	if got := agentMetric(t, h, "tabby_agent_dead_endpoints_reaped_total"); got != 0 {
		t.Errorf("reaped = %v, want 0", got)
	}
	err := c.CNI().CheckNetworkList(ctx, h.ConfList("net1", "1.1.0"), agenttest.RuntimeConf(ct.ID, ct.NSPath, "eth0"))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("CHECK = %v, want an error saying the interface does not exist", err)
	}
	if err := ct.Detach(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if gone, err := endpointGone(ctx, c, ct, w); err != nil || !gone {
		t.Fatalf("after DEL: gone %v, %v; want gone", gone, err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for agentMetric(t, h, "tabby_agent_broken_endpoints") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the report outlives the endpoint")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
