package suite

import (
	"context"
	"fmt"
	"time"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/internal/lab"
)

// encaps are the measured modes; "ipv6" is the IPv6 path of a dual-stack
// lab (no encapsulation), against the same baseline over IPv6.
var encaps = []struct{ key, lab, label string }{
	{"none", "none", "no encapsulation"},
	{"vxlan", "vxlan", "VXLAN"},
	{"ipip", "ipip", "IP-in-IP"},
	{"ipv6", "none", "IPv6, no encapsulation"},
}

func xhostMetrics() []report.Metric {
	var ms []report.Metric
	for _, e := range encaps {
		for _, s := range []int{1, 4} {
			ms = append(ms, report.Metric{Key: fmt.Sprintf("%s-%d", e.key, s), Label: fmt.Sprintf("%s, %d stream%s", e.label, s, map[bool]string{true: "s"}[s > 1]), Unit: "Gbit/s"})
		}
	}
	return ms
}

// CrossHost is cross-host TCP throughput through a Tabby lab, without
// encapsulation and with VXLAN (and IP-in-IP where the kernel has it).
var CrossHost = harness.Benchmark{
	ID:    "xhost",
	Title: "Cross-host TCP throughput",
	What: `iperf3 (1 and 4 streams) from a container on lab host h1 to a container on h2: container → h1 →
the lab's fabric bridge → h2 → container, routes learned over BGP. One 2-host lab per mode: the default
IPPool with no encapsulation, ` + "`vxlanMode: Always`" + ` and ` + "`ipipMode: Always`" + ` (IP-in-IP only where the kernel
has the ipip driver), and a dual-stack lab (` + "`--ip-family dual`" + `) measured over IPv6; each lab's containers
are created after the mode is set, so their MTU fits it.`,
	Baseline: `A plain routed veth path with the same hops, built by hand: container → host (a /32 route
and proxy-ARP, a static route to the other container via the other host) → a bridge → host → container,
no ruleset, no encapsulation, MTU 1500. The same baseline figure is the denominator of every IPv4 mode;
the IPv6 row's baseline is that path over IPv6 (a /128 route, default route via the host side's
link-local address, static /128 route via the other host).`,
	Method:  `Each round measures the baseline and every Tabby mode (order alternating between rounds).`,
	Systems: []report.System{{Key: report.Tabby, Label: "Tabby"}, {Key: "routed", Label: "routed veth path", Baseline: true}},
	Metrics: xhostMetrics(),
	Needs:   []string{"ip", "iperf3", "ping", "ss"},
	Budget:  5 * time.Minute, QuickBudget: 60 * time.Second,
	Run: runCrossHost,
}

func runCrossHost(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	base, err := harness.NewCrossHost(env)
	if err != nil {
		return err
	}
	if _, err := iperfServer(env, base.C2, base.IP2); err != nil {
		return err
	}
	hasIPIP, err := harness.KernelHas(env, "ipip")
	if err != nil {
		return err
	}
	type target struct{ client, server string }
	if _, err := iperfServer(env, base.C2, base.IP6s[1]); err != nil {
		return err
	}
	targets := map[string]target{"routed": {base.C1, base.IP2}, "routed6": {base.C1, base.IP6s[1]}}
	var modes []string
	for _, e := range encaps {
		if e.key == "ipip" && !hasIPIP {
			rec.Note("IP-in-IP not measured: this kernel has no ipip driver (`ip link add … type ipip`: Unknown device type).")
			continue
		}
		cfg := lab.Config{Nodes: 2, Encap: e.lab}
		if e.key == "ipv6" {
			cfg.IPFamily = lab.Dual
		}
		l, err := harness.StartLab(ctx, env, cfg)
		if err != nil {
			return fmt.Errorf("lab for %s: %w", e.label, err)
		}
		srv, ip, err := harness.LabRun(ctx, l, lab.RunSpec{Name: "srv", Node: "h2", Command: []string{"iperf3", "-s"}})
		if err != nil {
			return err
		}
		if e.key == "ipv6" {
			ip = srv.IP6()
		}
		cli, _, err := harness.LabRun(ctx, l, lab.RunSpec{Name: "cli", Node: "h1", Command: []string{"sleep", "infinity"}})
		if err != nil {
			return err
		}
		if err := waitTCP(srv.NetNS, ":5201", 10*time.Second); err != nil {
			return err
		}
		if err := waitPing(ctx, cli.NetNS, ip.String(), 30*time.Second); err != nil {
			return fmt.Errorf("%s: %w", e.label, err)
		}
		targets[e.key] = target{cli.NetNS, ip.String()}
		modes = append(modes, e.key)
	}
	secs := harness.Pick(env, 3, 2)
	for r := 1; r <= env.Rounds; r++ {
		for _, sys := range harness.Order(r, append([]string{"routed", "routed6"}, modes...)...) {
			t := targets[sys]
			for _, streams := range []int{1, 4} {
				g, err := iperf(ctx, t.client, t.server, secs, streams)
				if err != nil {
					return fmt.Errorf("%s: %w", sys, err)
				}
				switch {
				case sys == "routed6":
					rec.Add(fmt.Sprintf("ipv6-%d", streams), "routed", r, g)
				case sys == "routed":
					for _, m := range modes {
						if m != "ipv6" {
							rec.Add(fmt.Sprintf("%s-%d", m, streams), "routed", r, g)
						}
					}
				default:
					rec.Add(fmt.Sprintf("%s-%d", sys, streams), report.Tabby, r, g)
				}
			}
		}
		env.Log.Info("round", "round", r)
	}
	return nil
}

// waitPing waits until ns reaches ip (routes learned over BGP take a moment).
func waitPing(ctx context.Context, ns, ip string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := harness.Run(ctx, harness.InNS(ns, "ping", "-c1", "-W1", ip)...)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s cannot reach %s after %s: %w", ns, ip, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
