package bgp

import (
	"context"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Lost hosts.
//
// GoBGP handles a session that ends by its hold timer as it handles one
// that ends by a restart (graceful restart; osrg/gobgp#2174): the peer's
// routes stay, stale, for the restart time — 90 s of hold time plus 120 s
// of restart time with the defaults. For a peer that is another Tabby agent
// that is wrong: an agent that restarts closes its TCP session (the kernel
// closes it even after SIGKILL), so a Tabby session ends by its hold timer
// only when the host is gone or cut off, and traffic to its containers
// should stop being sent into the void as soon as the hold time says so.
//
// So the speaker keeps, for every session to a peer marked Agent, when it
// last heard from the peer (any message: the peer sends a keepalive every
// third of the hold time). When such a session ends after a silence of two
// thirds of its hold time or more, the speaker removes the peer and adds it
// again, which drops its routes at once; the session comes back by itself
// when the host does. Sessions to other peers (a top-of-rack router, BIRD)
// keep standard graceful-restart handling.

// lostSilence is the share of the hold time of silence that marks a peer
// as lost when its session ends. A live peer is silent for at most a third
// of the hold time (its keepalive interval); the watcher's sampling makes
// a lost peer look up to a sixth of the hold time less silent than it was.
const lostSilence = 2.0 / 3

// heard is what the watcher knows of one session.
type heard struct {
	up       bool
	received uint64        // messages received so far
	at       time.Time     // when received last grew (or the session came up)
	hold     time.Duration // negotiated hold time
}

// sessionState is one session as ListPeer reports it.
type sessionState struct {
	addr        string
	established bool
	received    uint64
	hold        time.Duration
	bfd         string // BFD session state ("": BFD off)
}

// watchLost follows srv's sessions until ctx ends: every sixth of the
// shortest hold time (at most 5 s), and on every peer event (wake).
func (s *Speaker) watchLost(ctx context.Context, srv *server.BgpServer, wake <-chan struct{}) {
	known := map[string]*heard{}
	bfdSeen := map[string]string{}
	wasUp := map[string]bool{}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		}
		sessions, err := listSessions(ctx, srv)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Debug("list BGP sessions", "error", err)
			}
			timer.Reset(time.Second)
			continue
		}
		lost, every := track(known, sessions, time.Now())
		for _, l := range lost {
			s.dropLost(ctx, srv, l)
		}
		s.renewBFD(ctx, srv, wasUp, sessions)
		if s.noteBFD(bfdSeen, sessions) {
			every = min(every, bfdPoll)
		}
		timer.Reset(every)
	}
}

func listSessions(ctx context.Context, srv *server.BgpServer) ([]sessionState, error) {
	var out []sessionState
	err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		st := sessionState{}
		if p.Conf != nil {
			st.addr = p.Conf.NeighborAddress
		}
		if p.State != nil {
			st.established = p.State.SessionState == api.PeerState_SESSION_STATE_ESTABLISHED
			if m := p.State.Messages; m != nil && m.Received != nil {
				st.received = m.Received.Total
			}
		}
		if t := p.Timers; t != nil && t.State != nil {
			st.hold = time.Duration(t.State.NegotiatedHoldTime) * time.Second
		}
		st.bfd = bfdState(p)
		out = append(out, st)
	})
	return out, err
}

// lostPeer is a session that ended after a long silence.
type lostPeer struct {
	addr    string
	silence time.Duration
	hold    time.Duration
}

// track updates known from one look at the sessions and returns the
// sessions that ended after a silence of lostSilence of their hold time,
// and when to look again.
func track(known map[string]*heard, sessions []sessionState, now time.Time) ([]lostPeer, time.Duration) {
	var lost []lostPeer
	every := 5 * time.Second
	seen := map[string]bool{}
	for _, st := range sessions {
		seen[st.addr] = true
		h := known[st.addr]
		if h == nil {
			h = &heard{}
			known[st.addr] = h
		}
		switch {
		case st.established:
			if !h.up || st.received != h.received {
				*h = heard{up: true, received: st.received, at: now, hold: st.hold}
			}
			if st.hold > 0 {
				every = min(every, max(st.hold/6, 100*time.Millisecond))
			}
		case h.up:
			h.up = false
			if silence := now.Sub(h.at); h.hold > 0 && silence.Seconds() >= lostSilence*h.hold.Seconds() {
				lost = append(lost, lostPeer{addr: st.addr, silence: silence, hold: h.hold})
			}
		}
	}
	for addr := range known {
		if !seen[addr] {
			delete(known, addr)
		}
	}
	return lost, every
}

// dropLost removes a lost Tabby peer and adds it again, so that its routes
// go now rather than when graceful restart gives up.
func (s *Speaker) dropLost(ctx context.Context, srv *server.BgpServer, l lostPeer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != srv || s.cur == nil {
		return
	}
	var p Peer
	found := false
	for _, c := range s.cur.Peers {
		if c.Address.String() == l.addr {
			p, found = c, true
		}
	}
	if !found || !p.Agent {
		return
	}
	s.log.Warn("BGP peer silent until its hold time ran out: its host is gone or cut off; withdrawing its routes now instead of keeping them for graceful restart",
		"peer", p, "silentFor", l.silence.Round(100*time.Millisecond), "holdTime", l.hold)
	if err := srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: l.addr}); err != nil {
		s.log.Warn("remove lost BGP peer", "peer", p, "error", err)
		return
	}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, s.cur, &s.o, false, p.BFD)}); err != nil {
		// Apply re-adds it: the peer stays in s.cur only if it is there.
		s.log.Warn("re-add lost BGP peer", "peer", p, "error", err)
		s.cur.Peers = deletePeer(s.cur.Peers, p.Address.String())
	}
	s.signal()
}

func deletePeer(ps []Peer, addr string) []Peer {
	out := ps[:0:0]
	for _, p := range ps {
		if p.Address.String() != addr {
			out = append(out, p)
		}
	}
	return out
}
