package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/internal/agent/nodeip"
)

// Default settings of the agent.
const (
	DefaultSocket            = "/run/tabby/agent.sock"
	DefaultHTTPListen        = "127.0.0.1:9099"
	DefaultResyncInterval    = 30 * time.Second
	DefaultGCInterval        = time.Minute
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultDeadEndpointGrace = 5 * time.Second
	DefaultDeadEndpointSweep = 30 * time.Second
)

// Config is everything the agent needs; flags and environment are merged
// into it by the command, never read here.
type Config struct {
	// Node is this host's name in the datastore.
	Node string
	// NodeIP is the node's address with its subnet length; when invalid it
	// is detected with NodeIPDetect (Calico's methods, default first-found).
	NodeIP       netip.Prefix
	NodeIPDetect string
	// NodeIPv6 is optional.
	NodeIPv6 netip.Prefix
	// Socket is the unix socket the CNI plugin talks to (mode 0600).
	Socket string
	// HTTPListen serves /livez, /readyz and /metrics ("" disables).
	HTTPListen string
	// MTU of workload interfaces; 0 means the uplink's MTU minus the
	// overhead of the encapsulation in use.
	MTU int
	// ResyncInterval is how often the dataplane is fully re-checked
	// against the datastore, repairing drift.
	ResyncInterval time.Duration
	// GCInterval is how often leaked IPAM allocations are looked for.
	GCInterval time.Duration
	// HeartbeatInterval is how often the Node's status is refreshed.
	HeartbeatInterval time.Duration
	// DeadEndpointGrace is how long a local endpoint must have been dead
	// (host interface and network namespace both gone) before the agent
	// removes it and releases its addresses; DeadEndpointSweep is how
	// often every local endpoint is checked, the safety net under the
	// netlink link events (see reaper.go).
	DeadEndpointGrace time.Duration
	DeadEndpointSweep time.Duration
	// DisablePolicy, DisableRouting turn dataplane parts off (for tests of
	// other parts; production leaves both on).
	DisablePolicy  bool
	DisableRouting bool
	// PolicyForm is the shape of the nftables table: PolicyFormFlat
	// (default) or PolicyFormReference (see KernelDataplane.Form).
	PolicyForm string
	// DisableBGP runs no BGP speaker: VXLAN pools still route (from the
	// datastore), other pools need another way (e.g. a flat L2 network).
	DisableBGP bool
	// Elector elects the one agent that runs the cluster-wide IPAM GC
	// (deleted nodes, orphaned blocks, handle records); the others collect
	// only their own node's blocks. The command passes an etcd election;
	// nil means this agent always leads (a single agent, or tests).
	Elector Elector
}

// Elector elects one agent at a time for cluster-wide work. It shares
// work out; it is not a lock: two agents may briefly both lead (a
// partitioned leader keeps believing it leads until its lease runs out),
// and the work is safe anyway since every write it makes is
// compare-and-swap. Implementations: etcd.Elector, memstore.Elector.
type Elector interface {
	// Run campaigns until ctx ends, again after losing the lead.
	Run(ctx context.Context) error
	// Leader reports whether this agent leads now.
	Leader() bool
}

// The election of the agent that runs the cluster-wide IPAM GC: its name
// and lease TTL (how long a crashed leader holds it before another agent
// takes over; a leader that stops cleanly hands over at once).
const (
	GCElection    = "ipam-gc"
	GCElectionTTL = 15 * time.Second
)

// soleElector is the Elector of an agent that is alone: it always leads.
type soleElector struct{}

func (soleElector) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (soleElector) Leader() bool                  { return true }

// WithDefaults returns c with unset fields defaulted.
func (c Config) WithDefaults() Config {
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	if c.PolicyForm == "" {
		c.PolicyForm = PolicyFormFlat
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = DefaultResyncInterval
	}
	if c.GCInterval == 0 {
		c.GCInterval = DefaultGCInterval
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.DeadEndpointGrace == 0 {
		c.DeadEndpointGrace = DefaultDeadEndpointGrace
	}
	if c.DeadEndpointSweep == 0 {
		c.DeadEndpointSweep = DefaultDeadEndpointSweep
	}
	return c
}

// Validate checks the config.
func (c Config) Validate() error {
	var errs []error
	if c.Node == "" {
		errs = append(errs, errors.New("node: a node name is required (--node)"))
	}
	if c.NodeIP.IsValid() && !c.NodeIP.Addr().Is4() {
		errs = append(errs, fmt.Errorf("node-ip: %s is not an IPv4 address", c.NodeIP))
	}
	if c.PolicyForm != PolicyFormFlat && c.PolicyForm != PolicyFormReference {
		errs = append(errs, fmt.Errorf("policy-form: %q: must be %s or %s", c.PolicyForm, PolicyFormFlat, PolicyFormReference))
	}
	if c.NodeIPv6.IsValid() && !c.NodeIPv6.Addr().Is6() {
		errs = append(errs, fmt.Errorf("node-ipv6: %s is not an IPv6 address", c.NodeIPv6))
	}
	if !c.NodeIP.IsValid() {
		if _, err := nodeip.Parse(c.NodeIPDetect); err != nil {
			errs = append(errs, fmt.Errorf("node-ip-detect: %w", err))
		}
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		errs = append(errs, fmt.Errorf("mtu: %d is outside 576–65535", c.MTU))
	}
	if c.DeadEndpointGrace < time.Second || c.DeadEndpointGrace > time.Hour {
		errs = append(errs, fmt.Errorf("dead-endpoint-grace: %s is outside 1s–1h", c.DeadEndpointGrace))
	}
	if c.DeadEndpointSweep < time.Second || c.DeadEndpointSweep > time.Hour {
		errs = append(errs, fmt.Errorf("dead-endpoint-sweep: %s is outside 1s–1h", c.DeadEndpointSweep))
	}
	return errors.Join(errs...)
}
