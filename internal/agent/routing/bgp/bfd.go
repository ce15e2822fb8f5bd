package bgp

import (
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

// BFD.
//
// GoBGP runs the BFD sessions (RFC 5880/5881, single hop, UDP 3784). When
// one expires, or the peer signals Down, GoBGP resets the BGP session with
// a Cease NOTIFICATION; a session that ends by a NOTIFICATION we send is
// not a graceful restart, so the peer's routes are withdrawn at once
// instead of being kept stale for the restart time. A peer whose agent
// restarts closes its TCP session first (graceful restart starts: its
// routes are kept), and its BFD expiring afterwards finds no session to
// reset, so restarts keep their routes as before.
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
	for addr := range seen {
		if !now[addr] {
			delete(seen, addr)
		}
	}
	return has
}
