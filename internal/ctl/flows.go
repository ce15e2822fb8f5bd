package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/flows"
	"github.com/tabbynet/tabby/internal/lab"
)

// flowsOptions are the flags of `tabby flows` and `tabby lab flows`.
type flowsOptions struct {
	namespace, endpoint, policy, action, since, output string
	follow                                             bool
	port                                               int
}

func (o *flowsOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.namespace, "namespace", "", "only flows with an endpoint in this namespace")
	f.StringVar(&o.endpoint, "endpoint", "", "only flows of this endpoint (NAME, NAMESPACE/NAME or Marathon app)")
	f.StringVar(&o.policy, "policy", "", "only flows this policy decided (or would decide, staged): NAME or NAMESPACE/NAME")
	f.StringVar(&o.action, "action", "", "only allowed (allow) or denied (deny) flows")
	f.StringVar(&o.since, "since", "", "only flows since this time (RFC 3339) or for this long (e.g. 5m)")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep streaming new flows")
	f.StringVarP(&o.output, "output", "o", "", "table, wide or json (one record per line)")
	f.IntVar(&o.port, "agent-port", lab.AgentHTTPPort, "the agents' HTTP port (their --http-listen)")
}

func (o *flowsOptions) filter() (flows.Filter, error) {
	switch o.output {
	case "", "table", "wide", "json":
	default:
		return flows.Filter{}, labUsageErr(fmt.Sprintf("-o %q: want table, wide or json", o.output))
	}
	since, err := flows.ParseSince(o.since, time.Now())
	if err != nil {
		return flows.Filter{}, labUsageErr("--" + err.Error())
	}
	f := flows.Filter{Since: since, Namespace: o.namespace, Endpoint: o.endpoint, Policy: o.policy, Action: o.action}
	if err := f.Validate(); err != nil {
		return flows.Filter{}, labUsageErr("--" + err.Error())
	}
	return f, nil
}

func newFlowsCommand(g *globals) *cobra.Command {
	var o flowsOptions
	cmd := &cobra.Command{
		Use:   "flows [--namespace NS] [--endpoint NAME] [--policy NAME] [--action allow|deny] [--since 5m] [--follow] [-o json|wide]",
		Short: "Show the flows of every node's endpoints, with the policy that decided each",
		Long: `Reads the flow records of every node's agent (GET /flows on its HTTP
address, found from the Node resources) and shows them merged, oldest first.
Each record is one flow of a local endpoint in one aggregation window: its
5-tuple, direction, endpoints, the action, and the tier, policy and rule that
decided it; where staged policies exist, also what they would decide (PENDING).
With --lab NAME the agents are reached inside the lab.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var client *http.Client
			var enrich func(*flows.FlowRecord)
			if g.lab != "" {
				client = lab.HTTPClientIn(lab.NodeNamespace(g.lab, lab.MasterNode))
				l, err := openLab(g.lab)
				if err != nil {
					return err
				}
				enrich = marathonNames(l)
			}
			return g.flows(cmd.Context(), &o, client, enrich)
		},
	}
	o.flags(cmd)
	return cmd
}

// newLabFlowsCommand is `tabby lab flows NAME`: `tabby --lab NAME flows`.
func newLabFlowsCommand(g *globals) *cobra.Command {
	var o flowsOptions
	cmd := &cobra.Command{
		Use:   "flows NAME [--namespace NS] [--endpoint NAME] [--policy NAME] [--action allow|deny] [--since 5m] [--follow] [-o json|wide]",
		Short: "Show a lab's flows (as tabby --lab NAME flows)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := openLab(args[0])
			if err != nil {
				return err
			}
			g.lab = args[0]
			return g.flows(cmd.Context(), &o, lab.HTTPClientIn(lab.NodeNamespace(args[0], lab.MasterNode)), marathonNames(l))
		},
	}
	o.flags(cmd)
	return cmd
}

// nodeAgentAddr is where a node's agent serves HTTP: its node address.
func nodeAgentAddr(n *api.Node, port int) (string, bool) {
	var cands []string
	for _, a := range n.Spec.Addresses {
		cands = append(cands, a.Address)
	}
	if b := n.Spec.BGP; b != nil {
		cands = append(cands, b.IPv4Address, b.IPv6Address)
	}
	for _, c := range cands {
		if p, err := netip.ParsePrefix(c); err == nil {
			return "http://" + netip.AddrPortFrom(p.Addr(), uint16(port)).String(), true
		}
		if a, err := netip.ParseAddr(c); err == nil {
			return "http://" + netip.AddrPortFrom(a, uint16(port)).String(), true
		}
	}
	return "", false
}

// marathonNames names the endpoints of a lab's Marathon tasks, which the
// lab (acting as Mesos) knows and the agents do not: app and task name, by
// address.
func marathonNames(l *lab.Lab) func(*flows.FlowRecord) {
	cs, err := l.Containers()
	if err != nil {
		return nil
	}
	tasks := map[string]*lab.MarathonTask{}
	for _, c := range cs {
		if c.Mesos == nil {
			continue
		}
		for _, ip := range c.IPs {
			tasks[ip.Addr().String()] = c.Mesos
		}
	}
	name := func(e **flows.Endpoint, ip string) {
		t, ok := tasks[ip]
		if !ok || *e == nil || (*e).App != "" {
			return
		}
		c := **e // records share endpoints: copy before changing
		c.App, c.Name = t.App, t.TaskName
		*e = &c
	}
	return func(r *flows.FlowRecord) {
		name(&r.Src, r.SrcIP)
		name(&r.Dst, r.DstIP)
	}
}

func (g *globals) flows(ctx context.Context, o *flowsOptions, client *http.Client, enrich func(*flows.FlowRecord)) error {
	f, err := o.filter()
	if err != nil {
		return err
	}
	// The endpoint filter is applied here too when the CLI names
	// endpoints the agents do not know (Marathon apps in a lab).
	agentFilter := f
	if enrich != nil {
		agentFilter.Endpoint = ""
	}
	store, err := g.connect()
	if err != nil {
		return err
	}
	rs, _, err := datastore.NewClient(store).List(ctx, "Node", "")
	store.Close()
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	c := &http.Client{}
	if client != nil {
		c2 := *client
		c = &c2
	}
	// A stream lasts as long as the user wants; a read is bounded.
	c.Timeout = 10 * time.Second
	if o.follow {
		c.Timeout = 0
	}
	client = c
	type agentAddr struct{ node, url string }
	var agents []agentAddr
	for _, r := range rs {
		n := r.(*api.Node)
		if u, ok := nodeAgentAddr(n, o.port); ok {
			agents = append(agents, agentAddr{n.Name, u})
		} else {
			fmt.Fprintf(g.stderr, "warning: node %s has no address; its flows are not shown\n", n.Name)
		}
	}
	if len(agents) == 0 {
		return errors.New("no node with an address: no agent to ask for flows")
	}
	out := newFlowPrinter(g.stdout, o.output, o.follow)
	var (
		mu   sync.Mutex
		all  []flows.FlowRecord
		wg   sync.WaitGroup
		errs = make([]error, len(agents))
	)
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = flows.Fetch(ctx, client, a.url, agentFilter, o.follow, func(r flows.FlowRecord) error {
				if enrich != nil {
					enrich(&r)
					if !f.Match(&r) {
						return nil
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if o.follow {
					return out.print(r)
				}
				all = append(all, r)
				return nil
			})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("node %s: %w", a.node, errs[i])
			}
		}()
	}
	wg.Wait()
	slices.SortStableFunc(all, func(a, b flows.FlowRecord) int { return a.Start.Compare(b.Start) })
	for _, r := range all {
		if err := out.print(r); err != nil {
			return err
		}
	}
	if err := out.flush(); err != nil {
		return err
	}
	var failed []error
	for _, e := range errs {
		if e != nil {
			failed = append(failed, e)
		}
	}
	if len(failed) == len(agents) {
		return errors.Join(failed...)
	}
	for _, e := range failed {
		fmt.Fprintln(g.stderr, "warning:", e)
	}
	return nil
}

// flowPrinter writes records as a table, a wide table or JSON lines.
type flowPrinter struct {
	w      io.Writer
	tw     *tabwriter.Writer
	format string
	header bool
	stream bool // flush every line (--follow)
}

func newFlowPrinter(w io.Writer, format string, stream bool) *flowPrinter {
	p := &flowPrinter{w: w, format: format, stream: stream}
	if format != "json" {
		p.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	}
	return p
}

func endpointName(e *flows.Endpoint, ip string, port uint16) string {
	s := ip
	if e != nil && e.Name != "" {
		s = e.Name
		if e.Namespace != "" {
			s = e.Namespace + "/" + e.Name
		}
	}
	if port != 0 {
		s += ":" + strconv.Itoa(int(port))
	}
	return s
}

func policyName(p flows.PolicyRef) string {
	var b strings.Builder
	if p.Kind != flows.PolicyKindDefault {
		if p.Tier != "" {
			b.WriteString(p.Tier + "|")
		}
		b.WriteString(p.Kind + "|")
	} else {
		b.WriteString("default|")
	}
	if p.Namespace != "" {
		b.WriteString(p.Namespace + "/")
	}
	b.WriteString(p.Name)
	if p.Rule >= 0 {
		b.WriteString("|" + strconv.Itoa(p.Rule))
	} else {
		b.WriteString("|end")
	}
	return b.String()
}

func (p *flowPrinter) print(r flows.FlowRecord) error {
	if p.format == "json" {
		return json.NewEncoder(p.w).Encode(r)
	}
	wide := p.format == "wide"
	if !p.header {
		p.header = true
		h := "START\tNODE\tDIR\tSRC\tDST\tPROTO\tACTION\tPOLICY"
		if wide {
			h += "\tPENDING\tPENDING-POLICY\tSRC-IP\tDST-IP\tPACKETS\tBYTES\tEND"
		}
		fmt.Fprintln(p.tw, h)
	}
	line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", r.Start.Local().Format("15:04:05"), r.Node, r.Direction,
		endpointName(r.Src, r.SrcIP, 0), endpointName(r.Dst, r.DstIP, r.DstPort), r.Proto, r.Action, policyName(r.Policy))
	if wide {
		pp := "-"
		if r.PendingPolicy != nil {
			pp = policyName(*r.PendingPolicy)
		}
		pa := r.PendingAction
		if pa == "" {
			pa = "-"
		}
		line += fmt.Sprintf("\t%s\t%s\t%s:%d\t%s:%d\t%d\t%d\t%s", pa, pp, r.SrcIP, r.SrcPort, r.DstIP, r.DstPort, r.Packets, r.Bytes, r.End.Local().Format("15:04:05"))
	} else if r.PendingAction != "" && r.PendingAction != r.Action {
		line += " (pending: " + r.PendingAction + ")"
	}
	fmt.Fprintln(p.tw, line)
	if p.stream {
		return p.tw.Flush()
	}
	return nil
}

func (p *flowPrinter) flush() error {
	if p.tw != nil {
		return p.tw.Flush()
	}
	return nil
}
