package ctl

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/agent"
	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/agent/flowlog"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/version"
)

func newAgentCommand(g *globals) *cobra.Command {
	var cfg agent.Config
	var fcfg flowlog.Config
	var flowLogs bool
	var dnsFlags dnsPolicyFlags
	var nodeIP, nodeIPv6, logLevel string
	cmd := &cobra.Command{
		Use:   "agent --node NAME [--datastore URLS] [--node-ip ADDR/LEN | --node-ip-detect METHOD]",
		Short: "Run the node agent (root; one per host)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(g, logLevel)
			if err != nil {
				return err
			}
			if cfg.Node == "" {
				cfg.Node = os.Getenv("TABBY_NODE")
			}
			if cfg.Node == "" {
				if h, err := os.Hostname(); err == nil {
					cfg.Node = strings.ToLower(h)
				}
			}
			if nodeIP != "" {
				p, err := parseAddrOrPrefix(nodeIP)
				if err != nil {
					return fmt.Errorf("--node-ip: %w", err)
				}
				cfg.NodeIP = p
			}
			if nodeIPv6 != "" {
				p, err := parseAddrOrPrefix(nodeIPv6)
				if err != nil {
					return fmt.Errorf("--node-ipv6: %w", err)
				}
				cfg.NodeIPv6 = p
			}
			if err := cfg.WithDefaults().Validate(); err != nil {
				return err
			}
			agent.Version = version.String()
			store, err := connectWithRetry(cmd, g, log)
			if err != nil {
				return err
			}
			defer store.Close()
			if es, ok := store.(*etcd.Store); ok {
				// One agent at a time runs the cluster-wide IPAM GC.
				cfg.Elector = etcd.NewElector(es, agent.GCElection, cfg.Node, agent.GCElectionTTL, log)
			}
			var fl *flowlog.Config
			if flowLogs && !cfg.DisablePolicy {
				fcfg.Node = cfg.Node
				fl = &fcfg
			}
			dp, err := newKernelDataplane(cfg, fl, store, log)
			if err != nil {
				return err
			}
			if err := dp.enableDNSPolicy(dnsFlags, log); err != nil {
				return err
			}
			a, err := agent.New(cfg, store, endpoint.New(log), dp, log)
			if err != nil {
				return err
			}
			if err := dp.mount(a); err != nil {
				return err
			}
			return runDataplaneAndAgent(cmd.Context(), dp, a)
		},
	}
	f := cmd.Flags()
	dnsFlags.register(f)
	f.StringVar(&cfg.Node, "node", "", "this node's name (env TABBY_NODE; default the hostname)")
	f.StringVar(&nodeIP, "node-ip", "", "this node's IPv4 address with its prefix length, e.g. 10.0.0.5/24")
	f.StringVar(&nodeIPv6, "node-ipv6", "", "this node's IPv6 address with its prefix length")
	f.StringVar(&cfg.NodeIPDetect, "node-ip-detect", "first-found", "how to find the node IP: first-found, interface=REGEX, skip-interface=REGEX, cidr=CIDR, can-reach=ADDR")
	f.StringVar(&cfg.Socket, "socket", agent.DefaultSocket, "unix socket the CNI plugin talks to")
	f.StringVar(&cfg.HTTPListen, "http-listen", agent.DefaultHTTPListen, "address for /livez, /readyz, /metrics (empty: off)")
	f.IntVar(&cfg.MTU, "mtu", 0, "MTU of container interfaces (0: the uplink's minus encapsulation overhead)")
	f.DurationVar(&cfg.ResyncInterval, "resync-interval", agent.DefaultResyncInterval, "how often the dataplane is fully re-checked")
	f.DurationVar(&cfg.GCInterval, "gc-interval", agent.DefaultGCInterval, "how often leaked addresses are looked for")
	f.DurationVar(&cfg.DeadEndpointGrace, "dead-endpoint-grace", agent.DefaultDeadEndpointGrace,
		"how long a container's interface and network namespace must both be gone before its endpoint and addresses are released (no CNI DEL came)")
	f.DurationVar(&cfg.DeadEndpointSweep, "dead-endpoint-sweep", agent.DefaultDeadEndpointSweep,
		"how often every local endpoint is checked for a dead container (besides netlink link events)")
	f.DurationVar(&g.requestTimeout, "datastore-timeout", DefaultAgentDatastoreTimeout,
		"bound on each datastore request: when the datastore does not answer, CNI ADD and DEL fail this soon with code 11 (try again later)")
	f.BoolVar(&cfg.DisablePolicy, "disable-policy", false, "do not program nftables policy (not for production)")
	f.StringVar(&cfg.PolicyForm, "policy-form", agent.PolicyFormFlat,
		"shape of the nftables table: flat (policies inlined and dispatched by port: a new connection's cost does not grow with the rules) or reference (one chain per policy, every rule walked)")
	f.BoolVar(&cfg.DisableRouting, "disable-routing", false, "do not run BGP or program routes")
	f.BoolVar(&cfg.DisableBGP, "disable-bgp", false, "run no BGP speaker; VXLAN pools still route from the datastore")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&flowLogs, "flow-logs", true, "record the flows of this node's endpoints (conntrack, NFLOG of denies) and serve them on GET /flows")
	f.DurationVar(&fcfg.Window, "flow-window", 0, "how long flows are aggregated into one record (default 5s)")
	f.IntVar(&fcfg.RingSize, "flow-ring", 0, "flow records kept in memory (default 10000)")
	f.Uint32Var(&fcfg.DenyRate, "flow-deny-rate", 0, "denied packets logged per second at most, by the kernel (default 200)")
	f.Uint16Var(&fcfg.NFLogGroup, "flow-nflog-group", 0, "the NFLOG group denied packets are logged to (default 20)")
	return cmd
}

// DefaultAgentDatastoreTimeout bounds each of the agent's datastore
// requests, so that a CNI ADD during a datastore outage fails with code 11
// within seconds instead of hanging until the runtime's timeout.
const DefaultAgentDatastoreTimeout = 3 * time.Second

func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or address/length", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func newLogger(g *globals, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: l})), nil
}

// connectWithRetry waits for the datastore: a daemon starting before etcd
// (after a reboot, say) keeps trying instead of exiting.
func connectWithRetry(cmd *cobra.Command, g *globals, log *slog.Logger) (datastore.Store, error) {
	delay := 500 * time.Millisecond
	for {
		s, err := g.connect()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, datastore.ErrUnavailable) {
			return nil, err
		}
		log.Warn("datastore unreachable; retrying", "error", err, "in", delay)
		select {
		case <-cmd.Context().Done():
			return nil, cmd.Context().Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}
