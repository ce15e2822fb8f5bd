package routinglab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/routing/kernel"
	"github.com/tabbynet/tabby/internal/agent/routing/routingtest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// iperf3 runs one TCP stream for secs seconds from a command prefix (the
// client's namespace) to addr and returns Gbit/s.
func iperf3(b *testing.B, client []string, addr netip.Addr, secs int) float64 {
	b.Helper()
	argv := append(slices.Clone(client), "iperf3", "-c", addr.String(), "-t", fmt.Sprint(secs), "-J")
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	var r struct {
		End struct {
			Received struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("iperf3 JSON: %v", err)
	}
	return r.End.Received.BPS / 1e9
}

// startIperf3Server runs `iperf3 -s` through argv's prefix; it is killed
// (by PID) when the benchmark ends.
func startIperf3Server(b *testing.B, prefix []string, addr netip.Addr) {
	b.Helper()
	argv := append(slices.Clone(prefix), "iperf3", "-s", "-B", addr.String())
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(500 * time.Millisecond)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkPrivilegedLabThroughput: one TCP stream between containers on
// two lab hosts (no encapsulation; VXLAN), against two namespaces joined
// by a plain routed veth pair, measured round-robin (medians of 3 rounds
// of 5 s). Goal: no encapsulation ≥ 90% of the veth pair.
func BenchmarkPrivilegedLabThroughput(b *testing.B) {
	requireRoot(b)
	testenv.NeedTool(b, "iperf3")
	// The floor: A -- veth -- B, routed.
	s := routingtest.Suffix(b)
	nsA, nsB := routingtest.NewNS(b, "tbyrbA-"+s), routingtest.NewNS(b, "tbyrbB-"+s)
	routingtest.Veth(b, nsA, "a0", "10.99.0.1/30", nsB, "b0", "10.99.0.2/30")
	startIperf3Server(b, []string{"ip", "netns", "exec", nsB}, netip.MustParseAddr("10.99.0.2"))

	type target struct {
		name   string
		client []string
		addr   netip.Addr
	}
	targets := []target{{"veth-pair", []string{"ip", "netns", "exec", nsA}, netip.MustParseAddr("10.99.0.2")}}
	for _, encap := range []string{"none", "vxlan"} {
		e := up(b, lab.Config{Name: "tp", Nodes: 2, Encap: encap})
		c1, c2 := e.run("c1", "h1"), e.run("c2", "h2")
		e.reach(c1, c2)
		startIperf3Server(b, []string{"ip", "netns", "exec", c2.NetNS}, c2.IP())
		targets = append(targets, target{"tabby-" + encap, []string{"ip", "netns", "exec", c1.NetNS}, c2.IP()})
	}
	res := map[string][]float64{}
	b.ResetTimer()
	for range b.N {
		for range 3 {
			for _, tg := range targets {
				res[tg.name] = append(res[tg.name], iperf3(b, tg.client, tg.addr, 5))
			}
		}
	}
	b.StopTimer()
	base := median(res["veth-pair"])
	for _, tg := range targets {
		m := median(res[tg.name])
		b.ReportMetric(m, tg.name+"-Gbit/s")
		b.Logf("%-12s median %.2f Gbit/s (%v), %.0f%% of the veth pair", tg.name, m, res[tg.name], 100*m/base)
	}
	b.ReportMetric(median(res["tabby-none"])/base, "none/veth")
	b.ReportMetric(median(res["tabby-vxlan"])/base, "vxlan/veth")
}

// BenchmarkPrivilegedLabRouteConvergence: 20 hosts in a full mesh; each
// host in turn claims a new block (IPAM, as a CNI ADD does), and the time
// from the start of the claim until the block's route is in every other
// node's kernel is measured (p50/p99 over the claims, 20 per round).
// Goal: under one second.
func BenchmarkPrivilegedLabRouteConvergence(b *testing.B) {
	requireRoot(b)
	const hosts = 20
	e := up(b, lab.Config{Name: "rc", Nodes: hosts})
	st := e.lab.State()
	nodes := st.AgentNodes()
	e.waitPeersUp("h1", len(nodes)-1)

	type seen struct {
		node string
		at   time.Time
		dst  netip.Prefix
	}
	events := make(chan seen, 4096)
	done := make(chan struct{})
	b.Cleanup(func() { close(done) })
	for _, n := range nodes {
		ch := make(chan netlink.RouteUpdate, 1024)
		err := netns.Do(netns.Path(n.Namespace), func() error { return netlink.RouteSubscribe(ch, done) })
		if err != nil {
			b.Fatalf("subscribe to routes of %s: %v", n.Name, err)
		}
		go func() {
			for u := range ch {
				if u.Type != unix.RTM_NEWROUTE || u.Route.Protocol != kernel.RouteProtocol || u.Route.Dst == nil {
					continue
				}
				a, _ := netip.AddrFromSlice(u.Route.Dst.IP)
				ones, _ := u.Route.Dst.Mask.Size()
				select {
				case events <- seen{n.Name, time.Now(), netip.PrefixFrom(a.Unmap(), ones)}:
				case <-done:
					return
				}
			}
		}()
	}
	m := ipam.New(e.store, nil)
	var lat []time.Duration
	b.ResetTimer()
	for round := range b.N {
		// A pool per round, so every claim below is a new block.
		poolName := fmt.Sprintf("bench-%d", round)
		b.StopTimer()
		e.apply(&api.IPPool{ObjectMeta: api.ObjectMeta{Name: poolName}, Spec: api.IPPoolSpec{CIDR: fmt.Sprintf("10.%d.0.0/16", 200+round%50), BlockSize: 26}})
		time.Sleep(time.Second)
		b.StartTimer()
		for i := 1; i <= hosts; i++ {
			node := lab.HostName(i)
			claimed := time.Now() // the claim starts: the measure includes IPAM's own time
			as, err := m.Allocate(context.Background(), ipam.Request{Handle: fmt.Sprintf("bench.%d.%d.eth0", round, i), Node: node, IPv4: 1, Pools4: []string{poolName}})
			if err != nil {
				b.Fatal(err)
			}
			blk := netip.PrefixFrom(as[0].Addr, 26).Masked()
			got := map[string]time.Time{}
			deadline := time.After(labWait)
			for len(got) < len(nodes) {
				select {
				case ev := <-events:
					if ev.dst == blk {
						got[ev.node] = ev.at
					}
				case <-deadline:
					b.Fatalf("block %s of %s reached only %d of %d nodes", blk, node, len(got), len(nodes))
				}
			}
			var last time.Time
			for n, at := range got {
				if n != node && at.After(last) {
					last = at
				}
			}
			lat = append(lat, last.Sub(claimed))
			b.Logf("%s claimed %s: on every other node after %s", node, blk, lat[len(lat)-1].Round(time.Millisecond))
			// The next claim must not be mistaken for this one's stragglers.
			time.Sleep(100 * time.Millisecond)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99-ms")
	b.Logf("claim → route on every other node (%d claims, %d nodes): p50 %s, p99 %s, max %s", len(lat), len(nodes), p(0.5), p(0.99), lat[len(lat)-1])
}
