package bgp

import (
	"context"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// BFD.
//
// GoBGP runs the BFD sessions (RFC 5880/5881, single hop, UDP 3784). When
// one expires, or the peer signals Down, GoBGP resets the BGP session with
// a Cease NOTIFICATION; a session that ends by a NOTIFICATION we send is
// not a graceful restart, so the peer's routes are withdrawn at once
// instead of being kept stale for the restart time.
//
// BFD runs inside the agent, so an agent restart takes its BFD sessions
// down too. The restarting agent closes its TCP sessions first, and its
// peers start graceful restart; but GoBGP queues the reset of the BFD
// expiry that follows, and sends it as soon as the session is back — a
// hard reset that withdraws the restarted host's routes after all (seen
// in TestPrivilegedBFDMesh). So when a BFD session's BGP session leaves
// Established, the watcher (woken by the peer event) re-makes its BFD
// peer before it can expire: a new BFD peer starts Down and does not
// expire until it has come Up again. A host that is cut off is detected
// while its session is up, and loses its routes at once; a host that
// restarts keeps them for graceful restart, as without BFD.
//
// BFD is changed only on sessions that are not established: GoBGP's
// UpdatePeer replaces a session's per-family state with the new config,
// which forgets the graceful-restart capability the peer announced, so
// the next restart of that peer would drop its routes (found by
// TestPrivilegedBFDMesh). A changed BFD setting therefore re-makes the
// session, like any other session setting.
//
// The speaker reports each session's BFD state in PeerStatus and counts
// the state changes it sees (Options.OnBFDTransition), looking every
// bfdPoll while a session has BFD, and on every peer event.

// bfdPoll is how often the sessions are looked at while any has BFD.
const bfdPoll = 200 * time.Millisecond

var bfdStateNames = map[api.BfdSessionState]string{
	api.BfdSessionState_BFD_SESSION_STATE_UP:         "Up",
	api.BfdSessionState_BFD_SESSION_STATE_DOWN:       "Down",
	api.BfdSessionState_BFD_SESSION_STATE_INIT:       "Init",
	api.BfdSessionState_BFD_SESSION_STATE_ADMIN_DOWN: "AdminDown",
}

// bfdState is a peer's BFD session state: "" when BFD is off.
func bfdState(p *api.Peer) string {
	if !p.GetBfd().GetEnabled() {
		return ""
	}
	if n, ok := bfdStateNames[p.GetState().GetBfdState().GetSessionState()]; ok {
		return n
	}
	return "Down"
}

// noteBFD reports the BFD state changes since the last look (seen holds
// the states then) and whether any session has BFD. A session that gets
// BFD starts from Down, so its first Up is a transition.
func (s *Speaker) noteBFD(seen map[string]string, sessions []sessionState) bool {
	has := false
	now := map[string]bool{}
	for _, st := range sessions {
		if st.bfd == "" {
			continue
		}
		has = true
		now[st.addr] = true
		prev, ok := seen[st.addr]
		if !ok {
			prev = "Down"
		}
		seen[st.addr] = st.bfd
		if prev == st.bfd {
			continue
		}
		addr, _ := netip.ParseAddr(st.addr)
		s.log.Info("BFD session state changed", "peer", addr, "from", prev, "to", st.bfd)
		if s.o.OnBFDTransition != nil {
			s.o.OnBFDTransition(addr, prev, st.bfd)
		}
	}
	for addr, prev := range seen {
		if now[addr] {
			continue
		}
		// Switched off (its session went down) or removed: Down.
		delete(seen, addr)
		if prev != "Down" {
			a, _ := netip.ParseAddr(addr)
			s.log.Info("BFD session state changed", "peer", a, "from", prev, "to", "Down")
			if s.o.OnBFDTransition != nil {
				s.o.OnBFDTransition(a, prev, "Down")
			}
		}
	}
	return has
}

// renewBFD re-makes the BFD of every BFD session that has just left the
// Established state (see above); wasUp holds the sessions established at
// the last look.
func (s *Speaker) renewBFD(ctx context.Context, srv *server.BgpServer, wasUp map[string]bool, sessions []sessionState) {
	var down []string
	for _, st := range sessions {
		if wasUp[st.addr] && !st.established {
			down = append(down, st.addr)
		}
		wasUp[st.addr] = st.established
	}
	if len(down) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != srv || s.cur == nil {
		return
	}
	for _, addr := range down {
		for _, p := range s.cur.Peers {
			if p.Address.String() != addr || !p.BFD.Enabled {
				continue
			}
			// Off, then on: GoBGP removes the BFD peer and adds a new one,
			// which starts Down (and cannot expire until it has been Up).
			for _, b := range []BFD{{}, p.BFD} {
				if _, err := srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: apiPeer(p, s.cur, &s.o, false, b)}); err != nil {
					s.log.Warn("renew BFD of a session that went down", "peer", p, "error", err)
					break
				}
			}
			s.log.Info("BGP session down: BFD session renewed", "peer", p)
		}
	}
}
