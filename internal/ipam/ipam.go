package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// Errors callers can test with errors.Is.
var (
	// ErrExhausted: the pools cannot supply the addresses asked for.
	ErrExhausted = errors.New("exhausted")
	// ErrInUse: a specific address asked for is held by another handle.
	ErrInUse = errors.New("address in use")
	// ErrReserved: a specific address asked for is in an IPReservation.
	ErrReserved = errors.New("address reserved")
	// ErrNotAllocated: the address to release is not allocated.
	ErrNotAllocated = errors.New("address not allocated")
	// ErrHandleMismatch: the handle already holds addresses that do not
	// match the request.
	ErrHandleMismatch = errors.New("handle already holds other addresses")
)

// Config tunes an IPAM. The zero value gives the defaults.
type Config struct {
	// ClaimTimeout is how long a pending block claim may stay pending: after
	// it, the claim is taken to be abandoned by a host that died, other
	// hosts may claim the block and GC removes the pending affinity.
	// Default 1 minute.
	ClaimTimeout time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Reservations, when set, supplies the IPReservations (the agent
	// passes its watched cache), so that an allocation reads none from
	// the datastore. When nil, every request lists them once.
	Reservations func() []*api.IPReservation
}

// DefaultClaimTimeout is Config.ClaimTimeout's default.
const DefaultClaimTimeout = time.Minute

// MaxAddrsPerRequest bounds IPv4+IPv6+len(Static) of one request.
const MaxAddrsPerRequest = 256

// maxTxnOps keeps a transaction under etcd's default limit of 128 operations.
const maxTxnOps = 120

// Validate checks the config.
func (c Config) Validate() error {
	if c.ClaimTimeout < 0 {
		return fmt.Errorf("ipam config: claimTimeout %s is negative", c.ClaimTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ClaimTimeout == 0 {
		c.ClaimTimeout = DefaultClaimTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// IPAM allocates addresses for the nodes of a cluster. It is safe for
// concurrent use; several IPAMs (one per agent, plus CLIs) may share a
// datastore, which is what keeps them consistent.
type IPAM struct {
	store  datastore.Store
	client *datastore.Client
	log    *slog.Logger
	cfg    Config

	locksMu sync.Mutex
	locks   map[string]*sync.Mutex // per node: allocations of one node take turns here

	viewsMu sync.Mutex
	views   map[string]*view // per node: what the last allocation read

	gcMu sync.Mutex
	gc   gcState

	// afterPending, when set (tests), runs between the two phases of a
	// block claim; an error aborts the claim as if the host died there.
	afterPending func(node string, cidr netip.Prefix) error
}

// New returns an IPAM over store with the default Config. It starts nothing.
func New(store datastore.Store, log *slog.Logger) *IPAM {
	m, _ := NewWithConfig(store, log, Config{})
	return m
}

// NewWithConfig returns an IPAM over store.
func NewWithConfig(store datastore.Store, log *slog.Logger, cfg Config) (*IPAM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &IPAM{
		store:  store,
		client: datastore.NewClient(store),
		log:    log.With("component", "ipam"),
		cfg:    cfg.withDefaults(),
		locks:  map[string]*sync.Mutex{},
		views:  map[string]*view{},
	}, nil
}

func (m *IPAM) now() time.Time { return m.cfg.Now() }

// Attributes describe who holds an allocation; they are stored with it.
type Attributes struct {
	Node, Namespace, Workload, ContainerID, Network, IfName string
	// Type marks special allocations, e.g. "vxlanTunnelAddress" (Calico's attribute).
	Type      string
	Timestamp time.Time
}

func (a Attributes) secondary() map[string]string {
	m := map[string]string{}
	for k, v := range map[string]string{
		AttrNode: a.Node, AttrNamespace: a.Namespace, AttrWorkload: a.Workload,
		AttrContainerID: a.ContainerID, AttrNetwork: a.Network, AttrIfName: a.IfName, AttrType: a.Type,
	} {
		if v != "" {
			m[k] = v
		}
	}
	if !a.Timestamp.IsZero() {
		m[AttrTimestamp] = a.Timestamp.UTC().Format(time.RFC3339)
	}
	return m
}

// Request asks for addresses for one handle on one node.
type Request struct {
	// Handle names the holder, normally HandleID(network, containerID, ifname).
	Handle string
	// Node is the host whose blocks the addresses come from.
	Node string
	// Attrs are stored with the allocation; Attrs.Node defaults to Node and
	// Attrs.Timestamp to now.
	Attrs Attributes
	// IPv4 and IPv6 are how many addresses of each family to allocate.
	IPv4, IPv6 int
	// Pools4 and Pools6 restrict allocation to these pools (names or
	// CIDRs); a name that matches no pool is an error.
	Pools4, Pools6 []string
	// Static asks for these exact addresses. A family with static addresses
	// gets those instead of IPv4/IPv6 automatic ones.
	Static []netip.Addr
	// Use is api.AllowedUseWorkload (default) or api.AllowedUseTunnel.
	Use string
}

// Allocation is one address handed out.
type Allocation struct {
	Addr  netip.Addr
	Block netip.Prefix
	Pool  *api.IPPool // nil when the block is in no pool any more
	// Seq is the block's sequence number for this allocation: a release
	// naming it (ReleaseAllocation) cannot free a later allocation of the
	// same address.
	Seq uint64
}

// validate checks a request; every error names the field at fault.
func (r *Request) validate() error {
	if err := checkHandle(r.Handle); err != nil {
		return err
	}
	if err := checkNode("node", r.Node); err != nil {
		return err
	}
	if r.Attrs.Node != "" {
		if err := checkNode("attrs.node", r.Attrs.Node); err != nil {
			return err
		}
	}
	switch r.Use {
	case "", api.AllowedUseWorkload, api.AllowedUseTunnel:
	default:
		return fmt.Errorf("use: %q is not %s or %s", r.Use, api.AllowedUseWorkload, api.AllowedUseTunnel)
	}
	if r.IPv4 < 0 || r.IPv6 < 0 {
		return fmt.Errorf("ipv4/ipv6: negative count (%d, %d)", r.IPv4, r.IPv6)
	}
	n := len(r.Static)
	seen := map[netip.Addr]bool{}
	has := [7]bool{}
	for i, a := range r.Static {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return fmt.Errorf("static[%d]: %q is not an IPv4 or IPv6 address", i, a)
		}
		if seen[a] {
			return fmt.Errorf("static[%d]: %s is listed twice", i, a)
		}
		seen[a] = true
		has[familyOf(a)] = true
	}
	if !has[4] {
		n += r.IPv4
	}
	if !has[6] {
		n += r.IPv6
	}
	if n == 0 {
		return fmt.Errorf("request for handle %q asks for no address (ipv4: 0, ipv6: 0, static: none)", r.Handle)
	}
	if n > MaxAddrsPerRequest {
		return fmt.Errorf("request for handle %q asks for %d addresses; at most %d are allowed", r.Handle, n, MaxAddrsPerRequest)
	}
	for i, p := range append(slices.Clone(r.Pools4), r.Pools6...) {
		if p == "" {
			return fmt.Errorf("pools: entry %d is empty", i)
		}
	}
	return nil
}

// counts is how many automatic addresses of each family the request wants.
func (r *Request) counts() (v4, v6 int) {
	v4, v6 = r.IPv4, r.IPv6
	for _, a := range r.Static {
		if a.Is4() {
			v4 = 0
		} else {
			v6 = 0
		}
	}
	return v4, v6
}

func (r *Request) use() string {
	if r.Use == "" {
		return api.AllowedUseWorkload
	}
	return r.Use
}

// lockNode serializes allocations for one node inside this process, so
// concurrent requests of one agent do not race each other for the same
// block; other processes are kept consistent by compare-and-swap alone.
func (m *IPAM) lockNode(node string) func() {
	m.locksMu.Lock()
	l := m.locks[node]
	if l == nil {
		l = &sync.Mutex{}
		m.locks[node] = l
	}
	m.locksMu.Unlock()
	l.Lock()
	return l.Unlock
}

// ipamConfig is the effective IPAMConfig "default".
type ipamConfig struct {
	strict       bool
	maxBlocks    int
	autoAllocate bool
	grace        time.Duration
	rev          int64 // 0: no IPAMConfig stored
}

var (
	ipamConfigKind, _ = api.LookupKind("IPAMConfig")
	nodeKind, _       = api.LookupKind("Node")
)

// readConfig reads IPAMConfig "default" (defaults when absent).
func (m *IPAM) readConfig(ctx context.Context) (ipamConfig, error) {
	c := ipamConfig{autoAllocate: true, grace: api.DefaultLeakGracePeriod}
	r, err := m.client.Get(ctx, "IPAMConfig", "", "default")
	if errors.Is(err, datastore.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read IPAMConfig: %w", err)
	}
	cfg := r.(*api.IPAMConfig)
	c.strict = cfg.Spec.StrictAffinity
	c.maxBlocks = cfg.Spec.MaxBlocksPerHost
	c.autoAllocate = cfg.Spec.AutoAllocate()
	c.grace = cfg.Spec.GracePeriod()
	c.rev, _ = strconv.ParseInt(cfg.ResourceVersion, 10, 64)
	return c, nil
}

// readPools reads every IPPool; pools that fail to parse are logged and
// left out (they were validated on write, so this means another writer).
func (m *IPAM) readPools(ctx context.Context) ([]*pool, error) {
	rs, _, err := m.client.List(ctx, "IPPool", "")
	if err != nil {
		return nil, fmt.Errorf("read IP pools: %w", err)
	}
	out := make([]*pool, 0, len(rs))
	for _, r := range rs {
		p, err := parsePool(r.(*api.IPPool))
		if err != nil {
			m.log.Warn("ignoring invalid IP pool", "error", err)
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *pool) int { return compareStrings(a.name, b.name) })
	return out, nil
}

// readNode reads a node's labels and revision (nil labels and 0 when the
// Node does not exist: IPAM works for unregistered nodes too).
func (m *IPAM) readNode(ctx context.Context, node string) (map[string]string, int64, error) {
	r, err := m.client.Get(ctx, "Node", "", node)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read node %q: %w", node, err)
	}
	rev, _ := strconv.ParseInt(r.GetObjectMeta().ResourceVersion, 10, 64)
	return r.GetObjectMeta().Labels, rev, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
