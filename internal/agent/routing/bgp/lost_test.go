package bgp_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing/bgp"
)

// silentLink is a TCP relay between two speakers that can go silent the
// way a powered-off host or a cut cable does: bytes stop flowing both ways
// and no FIN or RST reaches either end.
type silentLink struct {
	t  *testing.T
	l  net.Listener
	mu sync.Mutex
	// pairs are the relayed connections; each has its own frozen flag.
	pairs []*relayPair
}

type relayPair struct {
	a, b   net.Conn
	frozen atomic.Bool
}

// newSilentLink listens on listen (a free port) and relays every
// connection to to, dialling from from (so the far speaker sees the near
// one's address).
func newSilentLink(t *testing.T, listen netip.Addr, to netip.AddrPort, from netip.Addr) (*silentLink, uint16) {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(listen, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	s := &silentLink{t: t, l: l}
	go s.serve(to, from)
	t.Cleanup(s.close)
	return s, uint16(l.Addr().(*net.TCPAddr).Port)
}

func (s *silentLink) serve(to netip.AddrPort, from netip.Addr) {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: 5 * time.Second}
		u, err := d.Dial("tcp", to.String())
		if err != nil {
			c.Close()
			continue
		}
		p := &relayPair{a: c, b: u}
		s.mu.Lock()
		s.pairs = append(s.pairs, p)
		s.mu.Unlock()
		go p.pipe(u, c)
		go p.pipe(c, u)
	}
}

// pipe copies src to dst until src ends, dropping everything (the end
// too) once the pair is frozen.
func (p *relayPair) pipe(dst, src net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if p.frozen.Load() {
			if err != nil {
				return
			}
			continue
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			} else if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

// freeze silences every connection relayed so far; later ones flow.
func (s *silentLink) freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pairs {
		p.frozen.Store(true)
	}
}

func (s *silentLink) close() {
	s.l.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pairs {
		p.a.Close()
		p.b.Close()
	}
}

// TestLostPeer: when a session ends by its hold timer, a Tabby agent peer
// is taken for lost and its routes are withdrawn at once; an agent that
// restarts (its session closes) keeps its routes through graceful
// restart, and so does an outside peer that goes silent. The restart time
// (60 s) is longer than the test's wait, so a withdrawn route can only
// have been withdrawn by the lost-peer handling.
func TestLostPeer(t *testing.T) {
	const route = "10.244.7.0/26"
	tests := []struct {
		name     string
		agent    bool
		lose     func(b *node, link *silentLink)
		withdraw bool
	}{
		{"agent peer goes silent", true, func(_ *node, l *silentLink) { l.freeze() }, true},
		{"agent peer restarts", true, func(b *node, _ *silentLink) { b.halt() }, false},
		{"outside peer goes silent", false, func(_ *node, l *silentLink) { l.freeze() }, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newNode(t, "a", netip.AddrFrom4([4]byte{127, 0, 0, byte(71 + 2*i)}).String(), 64512)
			b := newNode(t, "b", netip.AddrFrom4([4]byte{127, 0, 0, byte(72 + 2*i)}).String(), 64512)
			link, port := newSilentLink(t, b.addr, netip.AddrPortFrom(b.addr, b.port), a.addr)
			// a dials b through the link; b only listens.
			toB := bgp.Peer{Address: b.addr, Port: port, ASN: b.asn, LocalAddress: a.addr,
				Keepalive: time.Second, RestartTime: 60 * time.Second, Agent: tc.agent}
			toA := bgp.Peer{Address: a.addr, Port: a.port, ASN: a.asn, Passive: true,
				Keepalive: time.Second, RestartTime: 60 * time.Second, Agent: tc.agent}
			apply(t, a, a.cfg(nil, toB))
			apply(t, b, b.cfg([]string{route}, toA))
			waitBest(t, a, route+" via "+b.addr.String())

			lost := time.Now()
			tc.lose(b, link)
			// The session ends within the 3 s hold time (a restart ends it
			// at once).
			eventually(t, "a's session to b down", func() (bool, string) {
				ps, err := a.sp.Peers(t.Context())
				if err != nil || len(ps) != 1 {
					return false, "peers: " + errString(err)
				}
				return ps[0].State != "Established", ps[0].Summary()
			})
			if tc.withdraw {
				waitBest(t, a)
				t.Logf("route of the lost peer withdrawn %s after it went silent (hold time 3 s, restart time 60 s)", time.Since(lost).Round(100*time.Millisecond))
				// When the host is back (new connections through the link
				// flow), so are the session and its route.
				waitBest(t, a, route+" via "+b.addr.String())
				return
			}
			// Kept, stale, well past the hold time.
			waitBest(t, a, route+" via "+b.addr.String()+" stale")
			time.Sleep(6 * time.Second)
			if got := best(t, a); len(got) != 1 || got[0] != route+" via "+b.addr.String()+" stale" {
				t.Errorf("6 s after the session ended, a's best paths are %q, want the route kept (stale) for graceful restart", got)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}
