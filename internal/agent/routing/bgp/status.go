package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Path is a best path learned from a peer.
type Path struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	Peer    netip.Addr
	// Stale: the peer is restarting and has not re-sent it yet.
	Stale bool
}

// Best lists the best path of every prefix learned from a peer (the
// host's own prefixes are left out), in prefix order.
func (s *Speaker) Best() ([]Path, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil, nil
	}
	var out []Path
	for _, fam := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := s.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam},
			func(prefix bgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					if !p.Best || p.Withdrawal || !p.PeerAddress.IsValid() {
						continue
					}
					pfx, ok := prefixOf(p.Nlri)
					nh := nextHopOf(p)
					if ok && nh.IsValid() {
						out = append(out, Path{Prefix: pfx, NextHop: nh, Peer: p.PeerAddress.Unmap(), Stale: p.Stale})
					}
				}
			})
		if err != nil {
			return nil, fmt.Errorf("list BGP paths: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b Path) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, nil
}

func prefixOf(n bgp.NLRI) (netip.Prefix, bool) {
	if p, ok := n.(*bgp.IPAddrPrefix); ok {
		return p.Prefix, true
	}
	pfx, err := netip.ParsePrefix(n.String())
	return pfx, err == nil
}

func nextHopOf(p *apiutil.Path) netip.Addr {
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			return a.Value.Unmap()
		case *bgp.PathAttributeMpReachNLRI:
			return a.Nexthop.Unmap()
		}
	}
	return netip.Addr{}
}

// PeerStatus is one session's state.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the FSM state: Idle, Connect, Active, OpenSent,
	// OpenConfirm or Established.
	State string
	// Since is when the session came up (Established) or went down.
	Since time.Time
	// Info adds the last error, if any.
	Info string
	// EndOfRIB: the peer has sent its whole table (or does not do
	// graceful restart, so nothing more can be waited for).
	EndOfRIB bool
	// Received and Accepted count the prefixes received from the peer.
	Received, Accepted uint64
	// BFD is the BFD session state: Up, Down, Init or AdminDown ("": BFD
	// is off for this session).
	BFD string
}

var stateNames = map[api.PeerState_SessionState]string{
	api.PeerState_SESSION_STATE_IDLE:        "Idle",
	api.PeerState_SESSION_STATE_CONNECT:     "Connect",
	api.PeerState_SESSION_STATE_ACTIVE:      "Active",
	api.PeerState_SESSION_STATE_OPENSENT:    "OpenSent",
	api.PeerState_SESSION_STATE_OPENCONFIRM: "OpenConfirm",
	api.PeerState_SESSION_STATE_ESTABLISHED: "Established",
}

// Running reports whether a speaker is running.
func (s *Speaker) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}

// Peers lists the state of every session, in address order.
func (s *Speaker) Peers(ctx context.Context) ([]PeerStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil, nil
	}
	configured := map[netip.Addr]bool{}
	for _, p := range s.cur.Peers {
		configured[p.Address] = p.BFD.Enabled
	}
	var out []PeerStatus
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		ps := PeerStatus{State: "Idle", EndOfRIB: true}
		if p.Conf != nil {
			ps.Address, _ = netip.ParseAddr(p.Conf.NeighborAddress)
			ps.Address = ps.Address.Unmap()
			ps.ASN = p.Conf.PeerAsn
		}
		ps.BFD = bfdState(p)
		if ps.BFD == "" && configured[ps.Address] {
			// Being re-made (bfd.go renewBFD).
			ps.BFD = "Down"
		}
		if st := p.State; st != nil {
			if n, ok := stateNames[st.SessionState]; ok {
				ps.State = n
			}
			if st.DisconnectMessage != "" {
				ps.Info = st.DisconnectMessage
			}
		}
		if t := p.Timers; t != nil && t.State != nil {
			switch {
			case ps.State == "Established" && t.State.Uptime != nil:
				ps.Since = t.State.Uptime.AsTime()
			case t.State.Downtime != nil && t.State.Downtime.AsTime().Unix() > 0:
				ps.Since = t.State.Downtime.AsTime()
			}
		}
		if ps.State != "Established" {
			ps.EndOfRIB = false
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				ps.Received += af.State.Received
				ps.Accepted += af.State.Accepted
			}
			if g := af.MpGracefulRestart; g != nil && g.State != nil && g.State.Received && !g.State.EndOfRibReceived {
				ps.EndOfRIB = false
			}
		}
		out = append(out, ps)
	})
	if err != nil {
		return nil, fmt.Errorf("list BGP peers: %w", err)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out, nil
}

// Summary is the INFO column: the state, and the last error if any.
func (ps PeerStatus) Summary() string {
	if ps.Info == "" {
		return ps.State
	}
	return ps.State + " " + strings.TrimSpace(ps.Info)
}
