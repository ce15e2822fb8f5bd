package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/lab"
)

// TestPrivilegedChaosAgentRestart: while a ping (every 10 ms) and an
// iperf3 TCP flow run from a container on h1 to one on h2, the agents of
// h2 and h1 are restarted — stopped (SIGTERM) or killed (SIGKILL, a
// crash) and started again. No packet is lost and the flow never stalls;
// the restarted host's kernel state (routes of every table, rules, the
// nftables ruleset) is the same while its agent is down and after it is
// back; BGP graceful restart keeps the peers' routes to its block at
// every sample (50 ms) meanwhile.
func TestPrivilegedChaosAgentRestart(t *testing.T) {
	e := up(t, lab.Config{Name: "ar", Nodes: 3})
	c1, c2 := e.run("c1", "h1"), e.run("c2", "h2")
	e.reach(c1, c2)
	e.reach(c2, c1)
	for _, n := range []string{"h1", "h2"} {
		e.peersUp(n, 3) // the other hosts and the master
	}
	type restart struct {
		node string
		kill bool
	}
	cycles := pick(
		[]restart{{"h2", true}, {"h1", false}},
		[]restart{{"h2", false}, {"h2", true}, {"h1", false}, {"h1", true}, {"h2", true}, {"h1", true}},
	)
	dur := time.Duration(len(cycles))*6*time.Second + 4*time.Second
	ping := e.startPing(c1, c2, dur)
	flow := e.startIperf(c2, c1, int(dur.Seconds()))
	time.Sleep(2 * time.Second)
	blocks := map[string]string{"h1": block(c1), "h2": block(c2)}
	peerOf := map[string]string{"h1": "h2", "h2": "h1"}
	var downtimes []string
	for _, c := range cycles {
		how := "SIGTERM"
		if c.kill {
			how = "SIGKILL"
		}
		before := e.kernelState(c.node)
		// The other host keeps the route to this host's block throughout.
		w := e.watchRoute(peerOf[c.node], blocks[c.node])
		t0 := time.Now()
		if err := e.lab.StopAgent(c.node, c.kill); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(before, e.kernelState(c.node)); d != "" {
			t.Errorf("%s of the agent of %s changed the kernel (-before +while down):\n%s", how, c.node, d)
		}
		time.Sleep(time.Second)
		if err := e.lab.StartAgent(context.Background(), c.node); err != nil {
			t.Fatal(err)
		}
		serving := time.Since(t0)
		e.peersUp(c.node, 3)
		for _, n := range []string{"h1", "h2", "master"} {
			if n != c.node {
				e.peersUp(n, 3)
			}
		}
		samples, missing := w.end()
		if missing > 0 {
			t.Errorf("%s restart of %s: %s had no route to %s in %d of %d samples", how, c.node, peerOf[c.node], blocks[c.node], missing, samples)
		}
		if d := cmp.Diff(before, e.kernelState(c.node)); d != "" {
			t.Errorf("the agent of %s, back after %s, changed the kernel (-before +after):\n%s", c.node, how, d)
		}
		downtimes = append(downtimes, how+" "+c.node+" "+serving.Round(10*time.Millisecond).String())
		figure(t, "route samples on the peer during the "+how+" restart of "+c.node, "%d, %d missing", samples, missing)
	}
	figure(t, "agent down until serving again", "%s", strings.Join(downtimes, ", "))
	sent, lost := ping.result(t)
	figure(t, "ping -i 0.01 across the restarts", "%d sent, %d lost", sent, lost)
	if lost != 0 {
		t.Errorf("ping across agent restarts lost %d of %d packets", lost, sent)
	}
	r := flow.result(t)
	figure(t, "iperf3 TCP across the restarts", "%.0f Mbit/s, slowest second %.0f Mbit/s, %d retransmits",
		r.End.SumSent.BitsPerSecond/1e6, r.minMbps(), r.End.SumSent.Retransmits)
}
