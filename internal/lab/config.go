package lab

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/tabbynet/tabby/internal/api"
)

// Defaults of a lab.
const (
	// DefaultStateRoot holds one directory per lab.
	DefaultStateRoot = "/run/tabby/lab"
	DefaultNodes     = 3
	DefaultRacks     = 1
	DefaultEncap     = "none"
	// DefaultIPFamily keeps the lab IPv4-only.
	DefaultIPFamily = IPv4
	// DefaultReadyTimeout bounds waiting for a process to serve.
	DefaultReadyTimeout = 60 * time.Second

	// MaxNameLen keeps link names (NAME-h1000, NAME-eth0) within the
	// kernel's 15 characters.
	MaxNameLen = 8
	// MaxRacks and MaxHostsPerRack follow from the addressing plan: rack r
	// is 10.(100+r).INDEX.0/24, hosts are .11 to .250.
	MaxRacks        = 16
	MaxHostsPerRack = 240
	// MaxNodes bounds one lab.
	MaxNodes = 1000
	// PoolName is the IPPool the lab creates; Pool6Name the IPv6 one (in
	// ipv6 and dual labs).
	PoolName  = "default-ipv4-ippool"
	Pool6Name = "default-ipv6-ippool"
)

// IP families of a lab (--ip-family).
const (
	// IPv4: IPv4 fabric and pool only (the default).
	IPv4 = "ipv4"
	// IPv6: dual-stack fabric (the control plane keeps IPv4), an IPv6
	// pool only, so containers get IPv6 addresses only.
	IPv6 = "ipv6"
	// Dual: dual-stack fabric and both pools; every container gets one
	// address of each family.
	Dual = "dual"
)

// DefaultPool is the pool containers get their addresses from.
var DefaultPool = netip.MustParsePrefix("10.244.0.0/16")

// DefaultPool6 is the IPv6 pool of ipv6 and dual labs: unique local
// addresses (RFC 4193), never routed outside the lab.
var DefaultPool6 = netip.MustParsePrefix("fd00:244::/64")

// ula is the unique local range: the only IPv6 addresses a lab uses.
var ula = netip.MustParsePrefix("fc00::/7")

// Config describes a lab to bring up. Flags are merged into it by the
// command; the package reads no environment.
type Config struct {
	// Name is short ([a-z][a-z0-9]*, at most MaxNameLen) so that link names
	// fit in 15 characters.
	Name string
	// Nodes is the number of agent hosts (default 3), spread round-robin
	// over Racks rack subnets (default 1).
	Nodes int
	Racks int
	// Pool is the CIDR of the default IPPool (default 10.244.0.0/16).
	Pool netip.Prefix
	// IPFamily is IPv4 (default), IPv6 or Dual: which families the fabric
	// and the pools carry.
	IPFamily string
	// Pool6 is the CIDR of the IPv6 IPPool (default fd00:244::/64), in
	// ipv6 and dual labs; it must be a unique local prefix.
	Pool6 netip.Prefix
	// Encap is none, vxlan, vxlan-crosssubnet, ipip or ipip-crosssubnet:
	// the default pool's ipipMode/vxlanMode.
	Encap string
	// StateRoot holds the lab's state directory (default DefaultStateRoot).
	StateRoot string
	// BinDir holds the tabby and tabby-cni binaries the lab runs.
	BinDir string
	// DNS, when set, is how the master runs `tabby dns`.
	DNS *DNSConfig
	// Console, when set, is how the master runs `tabby console`.
	Console *ConsoleConfig
	// AgentArgs are extra arguments for every `tabby agent`.
	AgentArgs []string
	// DNSPolicy runs every agent's DNS forwarder for egress rules by
	// domain (on the host's address, port DNSPolicyPort), asking the
	// master's `tabby dns`; it needs DNS.
	DNSPolicy bool
	// TLS runs the datastore with TLS and client-certificate auth, and
	// gives every component a certificate of its own (tls.go).
	TLS bool
	// ReadyTimeout bounds waiting for each process to serve (default 60s).
	ReadyTimeout time.Duration
	// Logger receives progress (default: discard).
	Logger *slog.Logger
	// Networks are extra CNI networks, each with its own profile and
	// optionally its own pool (see Lab.AddNetwork).
	Networks []NetworkSpec
}

// DNSConfig says how to start `tabby dns` on the master. Args builds its
// arguments (after "tabby") from the master's address and the datastore
// and Mesos master URLs.
type DNSConfig struct {
	Args func(masterIP netip.Addr, datastoreURL, mesosMasterURL string) []string
}

// WithDefaults returns c with unset fields defaulted.
func (c Config) WithDefaults() Config {
	if c.Nodes == 0 {
		c.Nodes = DefaultNodes
	}
	if c.Racks == 0 {
		c.Racks = DefaultRacks
	}
	if !c.Pool.IsValid() {
		c.Pool = DefaultPool
	}
	if c.Encap == "" {
		c.Encap = DefaultEncap
	}
	if c.IPFamily == "" {
		c.IPFamily = DefaultIPFamily
	}
	if !c.Pool6.IsValid() {
		c.Pool6 = DefaultPool6
	}
	if c.StateRoot == "" {
		c.StateRoot = DefaultStateRoot
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks a defaulted config; errors name the field and the value.
func (c Config) Validate() error {
	var errs []error
	if err := ValidateName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		errs = append(errs, fmt.Errorf("nodes %d: must be 1 to %d", c.Nodes, MaxNodes))
	}
	if c.Racks < 1 || c.Racks > MaxRacks {
		errs = append(errs, fmt.Errorf("racks %d: must be 1 to %d", c.Racks, MaxRacks))
	} else if c.Nodes >= 1 && c.Racks > c.Nodes {
		errs = append(errs, fmt.Errorf("racks %d: more racks than nodes (%d)", c.Racks, c.Nodes))
	} else if c.Nodes > c.Racks*MaxHostsPerRack {
		errs = append(errs, fmt.Errorf("nodes %d: at most %d hosts per rack, use more racks", c.Nodes, MaxHostsPerRack))
	}
	seen := map[string]bool{}
	for _, n := range c.Networks {
		if err := n.Validate(c.Racks); err != nil {
			errs = append(errs, err)
		}
		if n.Pool.IsValid() && c.Pool.IsValid() && n.Pool.Overlaps(c.Pool) {
			errs = append(errs, fmt.Errorf("network %s: pool %s overlaps the default pool %s", n.Name, n.Pool, c.Pool))
		}
		if seen[n.Name] {
			errs = append(errs, fmt.Errorf("network %s: given twice", n.Name))
		}
		seen[n.Name] = true
	}
	if err := ValidatePool(c.Pool, c.Racks); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := EncapModes(c.Encap); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateIPFamily(c.IPFamily); err != nil {
		errs = append(errs, err)
	} else if HasIPv6(c.IPFamily) {
		if err := ValidatePool6(c.Pool6); err != nil {
			errs = append(errs, err)
		}
	}
	if c.BinDir == "" {
		errs = append(errs, errors.New("binDir: the directory of the tabby and tabby-cni binaries is required"))
	}
	if c.ReadyTimeout < 0 {
		errs = append(errs, fmt.Errorf("readyTimeout %s: must not be negative", c.ReadyTimeout))
	}
	return errors.Join(errs...)
}

// ValidateName checks a lab name: [a-z][a-z0-9]*, at most MaxNameLen.
func ValidateName(name string) error {
	if name == "" {
		return errors.New(`lab name "": required`)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("lab name %q: longer than %d characters (link names must fit in 15)", name, MaxNameLen)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return fmt.Errorf("lab name %q: want lower-case letters and digits, starting with a letter", name)
		}
	}
	return nil
}

// fabricRange is the /16 that holds rack r's subnets of every lab.
func fabricRange(r int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + r), 0, 0}), 16)
}

// ValidatePool checks the pool CIDR: IPv4, room for at least one block,
// and clear of the fabric subnets of a lab with racks racks, loopback,
// link-local (the containers' gateway 169.254.1.1) and multicast.
func ValidatePool(p netip.Prefix, racks int) error {
	if !p.IsValid() {
		return errors.New("pool: a CIDR is required")
	}
	if !p.Addr().Is4() {
		return fmt.Errorf("pool %s: must be an IPv4 CIDR", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("pool %s: host bits are set (did you mean %s?)", p, p.Masked())
	}
	if p.Bits() < 8 || p.Bits() > 26 {
		return fmt.Errorf("pool %s: prefix length must be 8 to 26 (a block is a /26)", p)
	}
	reserved := []struct {
		net  netip.Prefix
		what string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "this-network addresses"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local (the containers' gateway)"},
		{netip.MustParsePrefix("224.0.0.0/3"), "multicast and reserved addresses"},
	}
	for r := 1; r <= max(racks, 1); r++ {
		reserved = append(reserved, struct {
			net  netip.Prefix
			what string
		}{fabricRange(r), "the lab fabric (rack " + strconv.Itoa(r) + ")"})
	}
	for _, res := range reserved {
		if p.Overlaps(res.net) {
			return fmt.Errorf("pool %s: overlaps %s %s", p, res.what, res.net)
		}
	}
	return nil
}

// ValidateIPFamily checks --ip-family.
func ValidateIPFamily(f string) error {
	switch f {
	case IPv4, IPv6, Dual:
		return nil
	}
	return fmt.Errorf("ip-family %q: want ipv4, ipv6 or dual", f)
}

// HasIPv4 and HasIPv6 say whether a lab of family f has a pool of that
// family. (The fabric carries IPv4 in every lab, IPv6 unless f is IPv4.)
func HasIPv4(f string) bool { return f == "" || f == IPv4 || f == Dual }
func HasIPv6(f string) bool { return f == IPv6 || f == Dual }

// FabricIPv6 says whether the fabric of a lab of family f is dual-stack.
func FabricIPv6(f string) bool { return HasIPv6(f) }

// ValidatePool6 checks the IPv6 pool: a unique local prefix (a lab never
// uses other IPv6 addresses), /48 to /122 (a block is a /122), clear of
// the lab fabric.
func ValidatePool6(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("pool6: a CIDR is required")
	case !p.Addr().Is6() || p.Addr().Is4In6():
		return fmt.Errorf("pool6 %s: must be an IPv6 CIDR", p)
	case p.Masked() != p:
		return fmt.Errorf("pool6 %s: host bits are set (did you mean %s?)", p, p.Masked())
	case p.Bits() < 48 || p.Bits() > 122:
		return fmt.Errorf("pool6 %s: prefix length must be 48 to 122 (a block is a /122)", p)
	case !ula.Contains(p.Addr()):
		return fmt.Errorf("pool6 %s: must be a unique local prefix (inside %s), as every lab address is", p, ula)
	case p.Overlaps(fabric6):
		return fmt.Errorf("pool6 %s: overlaps the lab fabric %s", p, fabric6)
	}
	return nil
}

// EncapModes maps --encap to the pool's ipipMode and vxlanMode.
func EncapModes(encap string) (ipip, vxlan string, err error) {
	switch encap {
	case "none":
		return api.EncapNever, api.EncapNever, nil
	case "ipip":
		return api.EncapAlways, api.EncapNever, nil
	case "ipip-crosssubnet":
		return api.EncapCrossSubnet, api.EncapNever, nil
	case "vxlan":
		return api.EncapNever, api.EncapAlways, nil
	case "vxlan-crosssubnet":
		return api.EncapNever, api.EncapCrossSubnet, nil
	}
	return "", "", fmt.Errorf("encap %q: want none, vxlan, vxlan-crosssubnet, ipip or ipip-crosssubnet", encap)
}
