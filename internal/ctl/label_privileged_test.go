package ctl

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testenv"
)

// TestPrivilegedLabelOnRunningEndpoint labels the endpoint of a running
// container with the CLI: policy follows the label, the label survives an
// agent restart, periodic resyncs and a repeated CNI ADD, and removing it
// restores traffic.
func TestPrivilegedLabelOnRunningEndpoint(t *testing.T) {
	testenv.Privileged(t)
	c := agenttest.NewCluster(t, "10.78.0.0/16")
	h := c.StartHost("node1", "10.201.0.1/24", "--resync-interval", "1s")
	a, b := h.Attach("net1"), h.Attach("net1")
	if err := lab.TCPEchoIn(a.NS, b.NS, b.IP()); err != nil {
		t.Fatalf("before any policy: %v", err)
	}
	c.Apply(&api.GlobalNetworkPolicy{ObjectMeta: api.ObjectMeta{Name: "quarantine"},
		Spec: api.GlobalNetworkPolicySpec{Selector: "quarantine == 'true'", Types: []string{api.PolicyTypeIngress}}})
	wep := endpointOf(t, c, b.ID)
	tabby := &cli{t: t, ds: c.EtcdURL}
	label := func(args ...string) {
		t.Helper()
		tabby.ok(append([]string{"label", "wep", wep.Name, "-n", wep.Namespace}, args...)...)
	}
	waitEcho := func(want bool, why string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := lab.TCPEchoIn(a.NS, b.NS, b.IP())
			if (err == nil) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: echo error %v, want reachable=%v", why, err, want)
			}
		}
	}

	label("quarantine=true")
	waitEcho(false, "after labelling the endpoint quarantine=true")

	// The agent restarts (reconcile), resyncs every second, and the
	// runtime repeats ADD: none of it rewrites the endpoint's labels.
	h.Stop()
	h.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.CNI().AddNetworkList(ctx, h.ConfList("net1", "1.1.0"), agenttest.RuntimeConf(b.ID, b.NSPath, "eth0")); err != nil {
		t.Fatalf("repeated ADD: %v", err)
	}
	if got := endpointOf(t, c, b.ID).Labels["quarantine"]; got != "true" {
		t.Fatalf("after agent restart and re-ADD the label is %q, want true", got)
	}
	waitEcho(false, "after agent restart")

	label("quarantine", "--remove")
	waitEcho(true, "after removing the label")
	if _, ok := endpointOf(t, c, b.ID).Labels["quarantine"]; ok {
		t.Fatal("label came back")
	}
}

func endpointOf(t *testing.T, c *agenttest.Cluster, containerID string) *api.WorkloadEndpoint {
	t.Helper()
	rs, _, err := c.Client.List(context.Background(), "WorkloadEndpoint", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if w := r.(*api.WorkloadEndpoint); w.Spec.ContainerID == containerID {
			return w
		}
	}
	t.Fatalf("no endpoint for container %s", containerID)
	return nil
}

// TestPrivilegedReservedAddressesNotAttached: a running agent (reading
// reservations from its watched cache) never gives a container a reserved
// address, including a reservation applied with the CLI while it runs.
func TestPrivilegedReservedAddressesNotAttached(t *testing.T) {
	testenv.Privileged(t)
	c := agenttest.NewCluster(t, "")
	c.Apply(&api.IPPool{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.IPPoolSpec{CIDR: "10.81.0.0/26", BlockSize: 29}})
	c.Apply(&api.IPReservation{ObjectMeta: api.ObjectMeta{Name: "low"}, Spec: api.IPReservationSpec{ReservedCIDRs: []string{"10.81.0.0/28"}}})
	h := c.StartHost("node1", "10.203.0.1/24")
	first := h.Attach("net1")
	if netip.MustParsePrefix("10.81.0.0/28").Contains(first.IP()) {
		t.Fatalf("container got reserved address %s", first.IP())
	}
	// Reserve the rest of first's block, then wait until the agent's
	// cache has it (the CLI shows the datastore; the agent watches it).
	blk := netip.PrefixFrom(first.IP(), 29).Masked()
	tabby := &cli{t: t, ds: c.EtcdURL}
	tabby.stdin = "apiVersion: projectcalico.org/v3\nkind: IPReservation\nmetadata: {name: later}\nspec: {reservedCIDRs: [" + blk.String() + "]}\n"
	tabby.ok("apply", "-f", "-")
	waitCached(t, h, `"name": "later"`)
	for i := range 8 {
		ct := h.Attach("net1")
		if a := ct.IP(); blk.Contains(a) || netip.MustParsePrefix("10.81.0.0/28").Contains(a) {
			t.Fatalf("attach %d got reserved address %s", i, a)
		}
	}
	if info := tabby.ok("ipam", "show"); !strings.Contains(info, "IPS RESERVED") {
		t.Fatalf("ipam show:\n%s", info)
	}
}

// waitCached polls the agent's cache (its HTTP /debug/cache, inside the
// host's namespace) until it holds want.
func waitCached(t *testing.T, h *agenttest.Host, want string) {
	t.Helper()
	hc := lab.HTTPClientIn(h.NS)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://127.0.0.1:9099" + agent.CachePath)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's cache did not get %s within 30s (%v)", want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
