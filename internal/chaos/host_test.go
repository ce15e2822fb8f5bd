package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
)

// fastMesh replaces the node-to-node mesh by the same mesh made of one
// BGPPeer with a 1 s keepalive (3 s hold time), so that a lost peer is
// noticed within seconds (the short forms). The graceful-restart time stays
// the default 120 s.
func (e *env) fastMesh() (hold, restart time.Duration) {
	e.t.Helper()
	off := false
	e.apply(
		&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off}},
		&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: "fast-mesh"}, Spec: api.BGPPeerSpec{
			NodeSelector: "all()", PeerSelector: "all()",
			KeepaliveTime: &api.Duration{Duration: time.Second},
		}},
	)
	return 3 * time.Second, 120 * time.Second
}

// TestPrivilegedChaosHostLoss: h3 is lost as a powered-off host is: its
// uplink is cut first (no TCP FIN reaches its peers), its agent killed,
// its namespace deleted, its container gone. Its peers drop the session
// after the BGP hold time and withdraw its routes at once — not after the
// graceful-restart time, which is for agents that restart (they close
// their sessions; a lost host falls silent) — while the other containers
// keep talking (a ping between h1 and h2 loses nothing). Once the Node is
// deleted, GC returns its blocks and addresses to the pool, its endpoints
// go (an address reused at once is listed by one endpoint only) and
// `tabby ipam check` is clean. Short form: a mesh of BGPPeers with a 3 s
// hold time; full form: the default node-to-node mesh (90 s hold time).
// Both keep the 120 s restart time, so a route gone within the bound was
// withdrawn because the host was taken for lost.
func TestPrivilegedChaosHostLoss(t *testing.T) {
	hostLoss(t, "hl", func(e *env) (time.Duration, time.Duration, bool) {
		if !*fullFlag {
			hold, restart := e.fastMesh()
			return hold, restart, false
		}
		return 90 * time.Second, 120 * time.Second, false
	})
}

// TestPrivilegedChaosHostLossBFD: the host-loss scenario on the default
// node-to-node mesh (90 s hold time) with BFD at 100 ms × 3
// (BGPConfiguration nodeMeshBFD): the lost host's sessions go down, and
// its routes are withdrawn, when BFD says so, well before the hold time.
// The same in the short and full forms.
func TestPrivilegedChaosHostLossBFD(t *testing.T) {
	hostLoss(t, "hb", func(e *env) (time.Duration, time.Duration, bool) {
		rx, tx, mult := int64(100), int64(100), int64(3)
		e.apply(&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{
			NodeMeshBFD: &api.BFD{Enabled: true, MinRxMs: &rx, MinTxMs: &tx, Multiplier: &mult}}})
		// The bound of the waits below is BFD's detection time.
		return 300 * time.Millisecond, 120 * time.Second, true
	})
}

// hostLoss runs the host-loss scenario on lab name; mesh configures the
// BGP mesh and returns the time within which a lost peer is noticed (the
// hold time, or BFD's detection time), the graceful-restart time and
// whether BFD runs.
func hostLoss(t *testing.T, name string, mesh func(e *env) (notice, restart time.Duration, bfd bool)) {
	e := up(t, lab.Config{Name: name, Nodes: 3, AgentArgs: []string{"--gc-interval=2s"}})
	e.setGCGrace(5 * time.Second)
	hold, restart, bfd := mesh(e)
	c1, c2, c3 := e.run("c1", "h1"), e.run("c2", "h2"), e.run("c3", "h3")
	for _, p := range [][2]*lab.Container{{c1, c3}, {c3, c1}, {c2, c3}, {c1, c2}} {
		e.reach(p[0], p[1])
	}
	peers := []string{"h1", "h2", lab.MasterNode}
	for _, n := range append(peers, "h3") {
		e.peersUp(n, 3)
		if bfd {
			e.bfdUp(n, 3)
		}
	}
	gone := block(c3)
	ping := e.startPing(c1, c2, hold+30*time.Second)

	// Lose h3.
	h3 := e.host("h3")
	if out, err := e.on("fabric", "ip", "link", "del", h3.FabricLink); err != nil {
		t.Fatalf("cut the uplink of h3: %v\n%s", err, out)
	}
	lost := time.Now()
	if err := e.lab.StopAgent("h3", true); err != nil {
		t.Fatal(err)
	}
	ipNetns(t, "netns", "del", h3.Namespace)
	if err := e.rm("c3"); err != nil {
		t.Fatal(err)
	}

	// Its peers drop the session after the hold time.
	var down, withdrawn []string
	for _, n := range peers {
		waitUntil(t, n+" drops the session to the lost h3", hold+labWait, func() error {
			st, err := e.status(n)
			if err != nil {
				return err
			}
			for _, p := range st.Peers {
				if p.Address == h3.IP.Addr().String() && p.State == "up" {
					return errors.New("still up")
				}
			}
			return nil
		})
		down = append(down, fmt.Sprintf("%s %s", n, time.Since(lost).Round(100*time.Millisecond)))
	}
	if bfd {
		figure(t, "BFD detection time (100 ms x 3), BGP hold time, graceful-restart time", "%s, %s, %s", hold, 90*time.Second, restart)
	} else {
		figure(t, "BGP hold time, graceful-restart time", "%s, %s", hold, restart)
	}
	figure(t, "session to the lost host down after", "%s", strings.Join(down, ", "))
	if last := time.Since(lost); last > hold+labWait/3 {
		t.Errorf("sessions to the lost host down %s after the loss, want within the hold time %s (and a margin)", last, hold)
	}
	for _, n := range peers {
		waitUntil(t, n+" withdraws the route to h3's block "+gone, hold+labWait/3, func() error {
			if ok, err := e.hasRoute(n, gone); err != nil || ok {
				return fmt.Errorf("route present (%v)", err)
			}
			return nil
		})
		withdrawn = append(withdrawn, fmt.Sprintf("%s %s", n, time.Since(lost).Round(100*time.Millisecond)))
	}
	figure(t, "route to the lost host's block withdrawn after the loss", "%s", strings.Join(withdrawn, ", "))
	if bfd {
		// Each survivor counted its BFD session to h3 going Down.
		for _, n := range peers {
			if got := e.metric(n, `tabby_bgp_bfd_transitions_total{state="Down"}`); got < 1 {
				t.Errorf("%s: tabby_bgp_bfd_transitions_total{state=\"Down\"} is %v after h3 was lost, want at least 1", n, got)
			}
		}
	}
	if last := time.Since(lost); last > hold+labWait/3 {
		t.Errorf("routes to the lost host withdrawn %s after the loss, want within the hold time %s (and a margin), not after graceful restart (%s)", last, hold, restart)
	}

	// The operator's answer to a dead host: delete its Node.
	if out, err := e.cli("delete", "node", "h3"); err != nil {
		t.Fatalf("tabby delete node h3: %v\n%s", err, out)
	}

	// Its blocks and addresses return to the pool.
	took := waitUntil(t, "h3's blocks and addresses return to the pool, its endpoints go", 2*labWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		blocks, err := e.ipam.Blocks(ctx)
		if err != nil {
			return err
		}
		for _, b := range blocks {
			if b.Node == "h3" {
				return fmt.Errorf("block %s still affine to h3 (%d in use)", b.CIDR, b.InUse)
			}
		}
		info, err := e.ipam.Lookup(ctx, c3.IP())
		if err != nil {
			return err
		}
		if info.Allocated {
			return fmt.Errorf("%s still allocated to %s", c3.IP(), info.Handle)
		}
		rep, err := e.ipam.Check(ctx, nil)
		if err != nil {
			return err
		}
		if !rep.OK() {
			return fmt.Errorf("ipam check: %v", rep.Problems)
		}
		if out, err := e.cli("ipam", "check"); err != nil {
			return fmt.Errorf("tabby ipam check: %v\n%s", err, out)
		}
		// Nor may an endpoint of the deleted node still list its freed
		// address.
		weps, _, err := e.client.List(ctx, "WorkloadEndpoint", "")
		if err != nil {
			return err
		}
		for _, r := range weps {
			if w := r.(*api.WorkloadEndpoint); w.Spec.Node == "h3" {
				return fmt.Errorf("endpoint %s of the deleted node h3 is left, listing %v", w.Name, w.Spec.IPNetworks)
			}
		}
		return nil
	})
	figure(t, "blocks, addresses and endpoints of the deleted node gone after", "%s (agents' GC every 2 s, leak grace 5 s)", took.Round(100*time.Millisecond))
	// The freed address goes to a new container (asked for, to make it
	// certain): no two endpoints may list it.
	reuse := e.cniAttemptArgs("h1", hangBound, [][2]string{{"IP", c3.IP().String()}})
	if reuse.Err != nil || reuse.IP != c3.IP().String() {
		t.Fatalf("ADD on h1 asking for the lost container's address %s: got %q, %v", c3.IP(), reuse.IP, reuse.Err)
	}
	if _, dups, err := e.duplicateAddrs(context.Background()); err != nil {
		t.Fatal(err)
	} else if len(dups) > 0 {
		t.Errorf("after the lost host's address went to a new container, endpoints share it: %v", dups)
	}

	sent, lostPkts := ping.result(t)
	figure(t, "ping -i 0.01 between the surviving hosts", "%d sent, %d lost", sent, lostPkts)
	if lostPkts != 0 {
		t.Errorf("ping between h1 and h2 lost %d of %d packets while h3 was lost", lostPkts, sent)
	}
	c4 := e.run("c4", "h1")
	e.reach(c4, c2)
}

// TestPrivilegedChaosPartition: two racks (VXLAN between them; h1, h3 and
// the master in rack 1; h2, h4 in rack 2) are cut apart at the router,
// then joined again.
// During the partition each side keeps working — pings inside each rack
// lose nothing, an ADD in rack 1 succeeds, an ADD in rack 2 (which cannot
// reach the datastore) fails fast with CNI code 11 — and traffic between
// the racks does not pass. After the heal every pair of containers
// reaches each other within seconds and rack 2's agents serve ADDs again.
// Short form: a 10 s partition; full form: 100 s, past the 90 s BGP hold
// time of the default mesh, so sessions between the racks go down too.
func TestPrivilegedChaosPartition(t *testing.T) {
	e := up(t, lab.Config{Name: "pt", Nodes: 4, Racks: 2, Encap: "vxlan-crosssubnet"})
	a1, b2, a3, b4 := e.run("a1", "h1"), e.run("b2", "h2"), e.run("a3", "h3"), e.run("b4", "h4")
	all := []*lab.Container{a1, b2, a3, b4}
	rack := map[*lab.Container]int{a1: 1, a3: 1, b2: 2, b4: 2}
	for _, a := range all {
		for _, b := range all {
			if a != b {
				e.reach(a, b)
			}
		}
	}
	for _, n := range []string{"h1", "h2", "h3", "h4"} {
		e.peersUp(n, 4)
	}
	cut := pick(10*time.Second, 100*time.Second)
	in1 := e.startPing(a1, a3, cut+8*time.Second)
	in2 := e.startPing(b2, b4, cut+8*time.Second)
	time.Sleep(time.Second)

	leg := e.lab.State().Router.Legs[1].Link
	if out, err := e.on(lab.RouterNode, "ip", "link", "set", leg, "down"); err != nil {
		t.Fatalf("partition: %v\n%s", err, out)
	}
	healed := false
	heal := func() {
		if !healed {
			healed = true
			if out, err := e.on(lab.RouterNode, "ip", "link", "set", leg, "up"); err != nil {
				t.Errorf("heal: %v\n%s", err, out)
			}
		}
	}
	t.Cleanup(heal)
	start := time.Now()
	time.Sleep(time.Second)
	if e.pings(a1, b2) {
		t.Fatal("a1 (rack 1) still reaches b2 (rack 2) during the partition")
	}
	at1 := e.cniAttempt("h1", hangBound)
	if at1.Err != nil {
		t.Errorf("ADD in rack 1 during the partition: %v", at1.Err)
	}
	at2 := e.cniAttempt("h2", hangBound)
	code, _ := cniCode(at2.Err)
	if at2.Err == nil || code != 11 || at2.Took > failFast {
		t.Errorf("ADD in rack 2 (no datastore) during the partition: got %v after %s, want CNI code 11 within %s", at2.Err, at2.Took, failFast)
	}
	figure(t, "ADD during the partition", "rack 1: succeeded in %s; rack 2 (datastore unreachable): code %d after %s",
		at1.Took.Round(10*time.Millisecond), code, at2.Took.Round(10*time.Millisecond))
	time.Sleep(time.Until(start.Add(cut)))
	heal()
	healedAt := time.Now()
	var slowest time.Duration
	for _, a := range all {
		for _, b := range all {
			if a == b || rack[a] == rack[b] {
				continue
			}
			waitUntil(t, fmt.Sprintf("%s reaches %s after the heal", a.Name, b.Name), labWait, func() error {
				if _, err := e.in(a, "ping", "-c", "1", "-W", "1", b.IP().String()); err != nil {
					return err
				}
				return nil
			})
			slowest = max(slowest, time.Since(healedAt))
		}
	}
	figure(t, "full reachability between the racks after the heal", "%s (partition of %s)", slowest.Round(10*time.Millisecond), cut)
	for _, p := range []*pinger{in1, in2} {
		sent, lost := p.result(t)
		figure(t, "ping inside a rack "+p.from+" → "+p.to+" across the partition", "%d sent, %d lost", sent, lost)
		if lost != 0 {
			t.Errorf("ping %s → %s inside its rack lost %d of %d packets", p.from, p.to, lost, sent)
		}
	}
	took := waitUntil(t, "an ADD in rack 2 after the heal", labWait, func() error {
		return e.cniAttempt("h2", hangBound).Err
	})
	figure(t, "first successful ADD in rack 2 after the heal", "%s", took.Round(10*time.Millisecond))
	for _, n := range []string{"h1", "h2", "h3", "h4"} {
		e.peersUp(n, 4)
	}
}
