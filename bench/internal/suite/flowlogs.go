package suite

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"time"

	"github.com/tabbynet/tabby/bench/internal/harness"
	"github.com/tabbynet/tabby/bench/internal/report"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/lab"
)

// FlowLogs is the cost of flow logs: the same traffic through two labs
// whose agents differ only in --flow-logs.
var FlowLogs = harness.Benchmark{
	ID:    "flowlogs",
	Title: "Flow logs: cost on new connections and throughput, and the agent's memory",
	What: `Two 2-host labs, identical but for the agents' ` + "`--flow-logs`" + ` (on: conntrack events and
dumps with counters, the deny paths logging to NFLOG, every new flow attributed to its policy; off: none
of it). In each, a GlobalNetworkPolicy admits TCP 5201 and 7000 to the server on h2 (so every new
connection walks policy), a client on h1. Measured: new connections per second (connect, 1 byte each
way, close; 4 loops), the CPU time the server host's agent spends per new connection meanwhile, and
single-stream iperf3 throughput, client → server across the hosts. Then the
flow ring of the lab with flow logs is filled (UDP datagrams to 25,000 distinct ports of the server,
each a flow record) and the server host's agent memory (RSS) reported before and after (full run only).`,
	Baseline: `The lab with ` + "`--flow-logs=false`" + ` in the same run.`,
	Method:   `Each round measures both labs, the order alternating between rounds; ratios are paired per round.`,
	Systems:  []report.System{{Key: report.Tabby, Label: "flow logs on"}, {Key: "off", Label: "flow logs off", Baseline: true}},
	Metrics: []report.Metric{
		{Key: "cps", Label: "new connections", Unit: "conn/s"},
		{Key: "gbps", Label: "TCP throughput, 1 stream", Unit: "Gbit/s"},
		{Key: "agent-cpu", Label: "server host's agent CPU per new connection", Unit: "µs", LowerIsBetter: true},
	},
	Needs:  []string{"ip", "iperf3"},
	Budget: 4 * time.Minute, QuickBudget: 35 * time.Second,
	Run: runFlowLogs,
}

// flowLogsPolicy admits the benchmark's ports to the server.
const flowLogsPolicy = `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: bench-server}
spec:
  selector: bench == 'server'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [5201, 7000]}}
  - {action: Allow, protocol: UDP}
  - {action: Allow, protocol: ICMP}
`

type flowLogsLab struct {
	l            *lab.Lab
	client, srv  string // network namespaces
	srvIP        netip.Addr
	agentPID     int // the server host's agent
	agentHTTP    string
	masterClient *http.Client
}

func startFlowLogsLab(ctx context.Context, env *harness.Env, on bool) (*flowLogsLab, error) {
	cfg := lab.Config{Nodes: 2}
	if !on {
		cfg.AgentArgs = []string{"--flow-logs=false"}
	}
	l, err := harness.StartLab(ctx, env, cfg)
	if err != nil {
		return nil, err
	}
	store, err := l.Store()
	if err != nil {
		return nil, err
	}
	defer store.Close()
	rs, err := api.Decode([]byte(flowLogsPolicy))
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if _, _, err := datastore.NewClient(store).Apply(ctx, r); err != nil {
			return nil, fmt.Errorf("apply the bench policy: %w", err)
		}
	}
	srv, ip, err := harness.LabRun(ctx, l, lab.RunSpec{Name: "srv", Node: "h2", Labels: []lab.KeyValue{{Key: "bench", Value: "server"}}, Command: []string{"iperf3", "-s"}})
	if err != nil {
		return nil, err
	}
	cli, _, err := harness.LabRun(ctx, l, lab.RunSpec{Name: "cli", Node: "h1", Command: []string{"sleep", "infinity"}})
	if err != nil {
		return nil, err
	}
	fl := &flowLogsLab{l: l, client: cli.NetNS, srv: srv.NetNS, srvIP: ip,
		masterClient: lab.HTTPClientIn(lab.NodeNamespace(l.Name(), lab.MasterNode))}
	for _, n := range l.Nodes() {
		if n.Name == "h2" {
			fl.agentPID = n.PID
		}
	}
	if h, ok := l.State().Node("h2"); ok {
		fl.agentHTTP = "http://" + netip.AddrPortFrom(h.IP.Addr(), lab.AgentHTTPPort).String()
	}
	if err := waitTCP(srv.NetNS, ":5201", 10*time.Second); err != nil {
		return nil, err
	}
	if _, err := crrServer(env, srv.NetNS, ip.String()+":7000"); err != nil {
		return nil, err
	}
	if err := waitPing(ctx, cli.NetNS, ip.String(), 30*time.Second); err != nil {
		return nil, err
	}
	return fl, nil
}

func runFlowLogs(ctx context.Context, env *harness.Env, rec *harness.Recorder) error {
	labs := map[string]*flowLogsLab{}
	for _, sys := range []string{report.Tabby, "off"} {
		l, err := startFlowLogsLab(ctx, env, sys == report.Tabby)
		if err != nil {
			return fmt.Errorf("lab with flow logs %s: %w", map[string]string{report.Tabby: "on", "off": "off"}[sys], err)
		}
		labs[sys] = l
	}
	secs := harness.Pick(env, 3, 1)
	crrDur := harness.Pick(env, 3*time.Second, 1500*time.Millisecond)
	for r := 1; r <= env.Rounds; r++ {
		for _, sys := range harness.Order(r, report.Tabby, "off") {
			l := labs[sys]
			cpu0, err := harness.CPUSeconds(l.agentPID)
			if err != nil {
				return err
			}
			c, err := crr(ctx, env, l.client, l.srvIP.String()+":7000", crrDur, 4)
			if err != nil {
				return fmt.Errorf("%s: %w", sys, err)
			}
			cpu1, err := harness.CPUSeconds(l.agentPID)
			if err != nil {
				return err
			}
			rec.Add("cps", sys, r, c.PerSec)
			if n := c.PerSec * crrDur.Seconds(); n > 0 {
				rec.Add("agent-cpu", sys, r, (cpu1-cpu0)*1e6/n)
			}
			g, err := iperf(ctx, l.client, l.srvIP.String(), secs, 1)
			if err != nil {
				return fmt.Errorf("%s: %w", sys, err)
			}
			rec.Add("gbps", sys, r, g)
		}
		env.Log.Info("round", "round", r)
	}
	if env.Quick {
		rec.Note("The flow ring's memory is measured in the full run only (the ring's bound: 4.4 MiB for 10,000 records, `TestRingBounded`).")
		return nil
	}
	return flowRingMemory(ctx, env, rec, labs[report.Tabby], labs["off"])
}

var (
	ringRecords = regexp.MustCompile(`(?m)^tabby_flow_ring_records (\S+)$`)
	heapInuse   = regexp.MustCompile(`(?m)^go_memstats_heap_inuse_bytes (\S+)$`)
)

// agentGauge reads one unlabelled gauge of the server host's agent.
func (l *flowLogsLab) agentGauge(re *regexp.Regexp) (float64, error) {
	resp, err := l.masterClient.Get(l.agentHTTP + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := re.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("the agent does not report %s", re)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// agentMemory is the server host's agent's RSS and Go heap in use, MiB.
func (l *flowLogsLab) agentMemory() (rss, heap float64, err error) {
	if rss, err = harness.RSSMiB(l.agentPID); err != nil {
		return 0, 0, err
	}
	h, err := l.agentGauge(heapInuse)
	return rss, h / (1 << 20), err
}

// flowRingMemory reports both server agents' memory after the rounds,
// then fills the flow ring of the one with flow logs and reports it again.
func flowRingMemory(ctx context.Context, env *harness.Env, rec *harness.Recorder, on, off *flowLogsLab) error {
	offRSS, offHeap, err := off.agentMemory()
	if err != nil {
		return err
	}
	before, beforeHeap, err := on.agentMemory()
	if err != nil {
		return err
	}
	n0, err := on.agentGauge(ringRecords)
	if err != nil {
		return err
	}
	// Three sprays: each window takes at most 10,000 distinct flows.
	for range 3 {
		if _, err := harness.Run(ctx, harness.InNS(on.client, env.Self, "helper", "udp-spray", "-addr", on.srvIP.String(), "-ports", "25000")...); err != nil {
			return fmt.Errorf("udp spray: %w", err)
		}
		time.Sleep(6 * time.Second) // a window closes
	}
	n1, err := on.agentGauge(ringRecords)
	if err != nil {
		return err
	}
	after, afterHeap, err := on.agentMemory()
	if err != nil {
		return err
	}
	rec.Note("h2's agent after the rounds: RSS %.1f MiB, Go heap in use %.1f MiB with flow logs; %.1f / %.1f MiB without.", before, beforeHeap, offRSS, offHeap)
	rec.Note("Flow ring filled (75,000 UDP flows in 3 windows): %.0f records held before, %.0f after (capacity 10,000); h2's agent RSS %.1f MiB, heap in use %.1f MiB. The bound: ring 4.4 MiB (461 bytes per record, `TestRingBounded`) + one window (at most 10,000 records) + the conntrack entries followed for counters (at most 16,384).",
		n0, n1, after, afterHeap)
	return nil
}

// udpSpray sends one datagram to each of n consecutive ports of addr
// (from 20000): n distinct flows.
func udpSpray(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("udp-spray", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "destination address")
	n := fs.Int("ports", 1000, "number of ports")
	if fs.Parse(args) != nil || *n < 1 || *n > 40000 {
		return 2
	}
	ip := net.ParseIP(*addr)
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer c.Close()
	for p := 20000; p < 20000+*n; p++ {
		if _, err := c.WriteToUDP([]byte{'x'}, &net.UDPAddr{IP: ip, Port: p}); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if p%500 == 0 {
			time.Sleep(5 * time.Millisecond) // bounded rate: about 100,000 datagrams/s at most
		}
	}
	return 0
}
