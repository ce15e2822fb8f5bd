package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Config is the whole desired state of the speaker. Apply makes the
// running speaker match it.
type Config struct {
	// RouterID is the node's IPv4 address (BGP router ID).
	RouterID netip.Addr
	ASN      uint32
	// ListenAddr is where the speaker listens (unspecified: every address)
	// on ListenPort; ListenPort 0 means it does not listen.
	ListenAddr netip.Addr
	ListenPort uint16
	// ClusterID is the route-reflector cluster ID (invalid: not a reflector).
	ClusterID netip.Addr
	Peers     []Peer
	// Paths are the prefixes the node originates; IPv4 ones get NextHop4,
	// IPv6 ones NextHop6 (an IPv6 prefix without NextHop6 is not sent).
	Paths              []netip.Prefix
	NextHop4, NextHop6 netip.Addr
}

// Peer is one session.
type Peer struct {
	Address netip.Addr
	Port    uint16 // 0: 179
	ASN     uint32
	// LocalAddress is the session's source address (invalid: any).
	LocalAddress netip.Addr
	// Password is the TCP-MD5 password ("" none). Never logged.
	Password             string
	RouteReflectorClient bool
	KeepOriginalNextHop  bool
	RestartTime          time.Duration // graceful restart (0: Options.RestartTime)
	Keepalive            time.Duration // 0: 30s (hold time is three times it)
	TTLSecurity          uint8         // hops (0: off)
	AllowOwnAS           uint8
	// Passive: wait for the peer to connect.
	Passive bool
	// Description is shown in status only (e.g. the peer type).
	Description string
	// BFD is the session's BFD (zero: off). A change re-makes the
	// session (see bfd.go for why it is not updated in place).
	BFD BFD
	// Agent: the peer is another Tabby agent, whose restarts close the
	// session; a session that ends by its hold timer means the host is
	// lost, and its routes are withdrawn at once (see lost.go).
	Agent bool
}

// BFD is a session's Bidirectional Forwarding Detection. When it goes
// down, GoBGP resets the session with a NOTIFICATION, so the peer's routes
// are withdrawn at once rather than kept for graceful restart.
type BFD struct {
	Enabled bool
	// MinRx is the slowest interval at which the peer's packets are
	// wanted, MinTx the interval of our own; 0 gives GoBGP's default (1s).
	MinRx, MinTx time.Duration
	// Multiplier is how many MinRx without a packet mark the peer down (0: 3).
	Multiplier uint8
}

// String describes a peer without its password.
func (p Peer) String() string {
	s := fmt.Sprintf("%s as %d", p.Address, p.ASN)
	if p.Port != 0 {
		s += fmt.Sprintf(" port %d", p.Port)
	}
	return s
}

// sameSession reports whether two peer configs give the same session (a
// difference means the session is re-made). The description and the
// next-hop handling (an export policy) change without touching it.
func sameSession(a, b Peer) bool {
	a.Description, b.Description = "", ""
	a.KeepOriginalNextHop, b.KeepOriginalNextHop = false, false
	return a == b
}

// sameGlobal reports whether two configs share the global settings (a
// difference restarts the speaker).
func sameGlobal(a, b *Config) bool {
	return a.RouterID == b.RouterID && a.ASN == b.ASN && a.ListenAddr == b.ListenAddr &&
		a.ListenPort == b.ListenPort && a.ClusterID == b.ClusterID
}

// Validate checks a config; errors name the field.
func (c *Config) Validate() error {
	if !c.RouterID.Is4() {
		return fmt.Errorf("bgp: routerID %s is not an IPv4 address", c.RouterID)
	}
	if c.ASN == 0 {
		return fmt.Errorf("bgp: asn 0 is not an AS number")
	}
	seen := map[netip.Addr]bool{}
	for i, p := range c.Peers {
		if !p.Address.IsValid() {
			return fmt.Errorf("bgp: peers[%d]: address is missing", i)
		}
		if seen[p.Address] {
			return fmt.Errorf("bgp: peers[%d]: %s is listed twice", i, p.Address)
		}
		seen[p.Address] = true
		if p.ASN == 0 {
			return fmt.Errorf("bgp: peers[%d] (%s): asn 0 is not an AS number", i, p.Address)
		}
	}
	return nil
}

func family(a netip.Addr) *api.Family {
	if a.Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// apiPeer builds GoBGP's peer configuration: graceful restart on (as
// restarting speaker when restarting is set: the kernel kept our
// forwarding state), short connect retry, the session's own family, BFD
// as bfd says.
func apiPeer(p Peer, c *Config, o *Options, restarting bool, bfd BFD) *api.Peer {
	restart := p.RestartTime
	if restart == 0 {
		restart = o.RestartTime
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        c.ASN,
			AuthPassword:    p.Password,
			AllowOwnAsn:     uint32(p.AllowOwnAS),
			Description:     p.Description,
		},
		Transport: &api.Transport{RemotePort: uint32(p.Port), PassiveMode: p.Passive},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:           uint64(o.ConnectRetry / time.Second),
			IdleHoldTimeAfterReset: uint64(o.ConnectRetry / time.Second),
		}},
		GracefulRestart: &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(restart / time.Second),
			DeferralTime:    uint32(o.DeferralTime / time.Second),
			LocalRestarting: restarting,
		},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: family(p.Address), Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}},
		}},
	}
	if p.LocalAddress.IsValid() {
		ap.Transport.LocalAddress = p.LocalAddress.String()
	}
	ap.Bfd = apiBFD(bfd)
	if p.Keepalive > 0 {
		ka := uint64(max(p.Keepalive/time.Second, 1))
		ap.Timers.Config.KeepaliveInterval = ka
		ap.Timers.Config.HoldTime = 3 * ka
	}
	if p.RouteReflectorClient && c.ClusterID.IsValid() {
		ap.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: c.ClusterID.String()}
	}
	switch {
	case p.TTLSecurity > 0:
		ap.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: uint32(256 - int(p.TTLSecurity))}
	case p.ASN != c.ASN:
		// eBGP peers need not be on the node's link (a ToR reached through
		// a router, a peer on a loopback).
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	return ap
}

// apiBFD is GoBGP's BFD config, every field set (GoBGP's defaults for
// unset ones) so that an update compares equal to what GoBGP holds.
func apiBFD(b BFD) *api.BfdPeerConfig {
	us := func(d time.Duration) uint32 {
		if d <= 0 {
			return uint32(time.Second / time.Microsecond)
		}
		return uint32(d / time.Microsecond)
	}
	m := uint32(b.Multiplier)
	if m == 0 {
		m = 3
	}
	return &api.BfdPeerConfig{
		Enabled: b.Enabled, Port: server.BfdServerPort,
		DesiredMinimumTxInterval: us(b.MinTx), RequiredMinimumReceive: us(b.MinRx), DetectionMultiplier: m,
	}
}

// keepNextHop lists the peers whose routes keep their next hop.
func keepNextHop(c *Config) []string {
	var out []string
	for _, p := range c.Peers {
		if p.KeepOriginalNextHop {
			out = append(out, netip.PrefixFrom(p.Address, p.Address.BitLen()).String())
		}
	}
	slices.Sort(out)
	return out
}
