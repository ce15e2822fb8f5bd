package bgp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing/bgp"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
)

// These tests run real GoBGP sessions between speakers in this process,
// over loopback addresses (127.0.0.x) and free ports: no root needed.

const waitFor = 30 * time.Second

type node struct {
	name string
	addr netip.Addr
	port uint16
	asn  uint32
	sp   *bgp.Speaker
	stop context.CancelFunc
	done chan struct{}
}

// freePort finds a port nothing listens on (the listener is closed again:
// GoBGP needs the number in its configuration).
func freePort(t *testing.T, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func newNode(t *testing.T, name, addr string, asn uint32) *node {
	t.Helper()
	a := netip.MustParseAddr(addr)
	n := &node{name: name, addr: a, asn: asn, port: freePort(t, a)}
	n.start(t)
	return n
}

func (n *node) start(t *testing.T) {
	t.Helper()
	n.sp = bgp.New(bgp.Options{Log: etcdtest.Logger(t).With("node", n.name), ConnectRetry: time.Second, DeferralTime: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		_ = n.sp.Run(ctx)
	}()
	t.Cleanup(n.halt)
}

// halt stops the speaker as an agent shutdown does (gracefully).
func (n *node) halt() {
	n.stop()
	<-n.done
}

func (n *node) cfg(paths []string, peers ...bgp.Peer) *bgp.Config {
	c := &bgp.Config{RouterID: n.addr, ASN: n.asn, ListenAddr: n.addr, ListenPort: n.port, NextHop4: n.addr, Peers: peers}
	for _, p := range paths {
		c.Paths = append(c.Paths, netip.MustParsePrefix(p))
	}
	return c
}

func (n *node) peer(from *node) bgp.Peer {
	return bgp.Peer{Address: n.addr, Port: n.port, ASN: n.asn, LocalAddress: from.addr}
}

func apply(t *testing.T, n *node, c *bgp.Config) {
	t.Helper()
	if err := n.sp.Apply(context.Background(), c); err != nil {
		t.Fatalf("%s: Apply: %v", n.name, err)
	}
}

// best renders a node's best learned paths as "prefix via next-hop".
func best(t *testing.T, n *node) []string {
	t.Helper()
	ps, err := n.sp.Best()
	if err != nil {
		t.Fatalf("%s: Best: %v", n.name, err)
	}
	out := []string{}
	for _, p := range ps {
		s := p.Prefix.String() + " via " + p.NextHop.String()
		if p.Stale {
			s += " stale"
		}
		out = append(out, s)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	var last string
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in %s; last: %s", what, waitFor, last)
}

func waitBest(t *testing.T, n *node, want ...string) {
	t.Helper()
	defer func(start time.Time) { t.Logf("%s: %q after %s", n.name, want, time.Since(start)) }(time.Now())
	slices.Sort(want)
	eventually(t, n.name+" best paths", func() (bool, string) {
		got := best(t, n)
		slices.Sort(got)
		return slices.Equal(got, want), fmt.Sprintf("got %q, want %q", got, want)
	})
}

func waitEstablished(t *testing.T, n *node, count int) {
	t.Helper()
	eventually(t, n.name+" sessions established", func() (bool, string) {
		ps, err := n.sp.Peers(context.Background())
		if err != nil {
			return false, err.Error()
		}
		up := 0
		var states []string
		for _, p := range ps {
			states = append(states, p.Address.String()+"="+p.Summary())
			if p.State == "Established" {
				up++
			}
		}
		return up == count, strings.Join(states, ", ")
	})
}

func TestSessionAdvertiseWithdraw(t *testing.T) {
	a := newNode(t, "a", "127.0.0.11", 64512)
	b := newNode(t, "b", "127.0.0.12", 64512)
	apply(t, a, a.cfg([]string{"10.244.0.0/26", "10.244.1.7/32"}, b.peer(a)))
	apply(t, b, b.cfg([]string{"10.244.0.64/26"}, a.peer(b)))
	waitEstablished(t, a, 1)
	waitBest(t, b, "10.244.0.0/26 via 127.0.0.11", "10.244.1.7/32 via 127.0.0.11")
	waitBest(t, a, "10.244.0.64/26 via 127.0.0.12")

	// Withdraw one prefix, add another: live.
	apply(t, a, a.cfg([]string{"10.244.0.0/26", "10.244.2.0/26"}, b.peer(a)))
	waitBest(t, b, "10.244.0.0/26 via 127.0.0.11", "10.244.2.0/26 via 127.0.0.11")

	// Removing the peer ends the session: routes go at once.
	apply(t, b, b.cfg([]string{"10.244.0.64/26"}))
	waitBest(t, b)
	waitBest(t, a)
}

func TestPasswordMismatchAndFix(t *testing.T) {
	a := newNode(t, "a", "127.0.0.21", 64512)
	b := newNode(t, "b", "127.0.0.22", 64512)
	pa, pb := b.peer(a), a.peer(b)
	pa.Password, pb.Password = "secret", "other"
	apply(t, a, a.cfg([]string{"10.244.0.0/26"}, pa))
	apply(t, b, b.cfg(nil, pb))
	time.Sleep(3 * time.Second)
	if got := best(t, b); len(got) != 0 {
		t.Fatalf("routes learned despite different passwords: %q", got)
	}
	pb.Password = "secret"
	apply(t, b, b.cfg(nil, pb))
	waitBest(t, b, "10.244.0.0/26 via 127.0.0.21")
}

// TestGracefulRestart: a speaker that stops (as on agent shutdown) leaves
// its routes with its peers, marked stale; when it is back the routes are
// fresh again, and what it no longer advertises is dropped.
func TestGracefulRestart(t *testing.T) {
	a := newNode(t, "a", "127.0.0.31", 64512)
	b := newNode(t, "b", "127.0.0.32", 64512)
	apply(t, a, a.cfg([]string{"10.244.0.0/26", "10.244.9.0/26"}, b.peer(a)))
	apply(t, b, b.cfg(nil, a.peer(b)))
	waitBest(t, b, "10.244.0.0/26 via 127.0.0.31", "10.244.9.0/26 via 127.0.0.31")

	a.halt()
	waitBest(t, b, "10.244.0.0/26 via 127.0.0.31 stale", "10.244.9.0/26 via 127.0.0.31 stale")

	a.start(t)
	apply(t, a, a.cfg([]string{"10.244.0.0/26"}, b.peer(a)))
	waitBest(t, b, "10.244.0.0/26 via 127.0.0.31")
}

// TestGlobalChange: a new AS number restarts the speaker; the sessions
// come back with the new AS.
func TestGlobalChange(t *testing.T) {
	a := newNode(t, "a", "127.0.0.41", 64512)
	b := newNode(t, "b", "127.0.0.42", 64512)
	apply(t, a, a.cfg([]string{"10.244.0.0/26"}, b.peer(a)))
	apply(t, b, b.cfg(nil, a.peer(b)))
	waitBest(t, b, "10.244.0.0/26 via 127.0.0.41")
	a.asn = 65001
	apply(t, a, a.cfg([]string{"10.244.0.0/26"}, b.peer(a)))
	apply(t, b, b.cfg(nil, a.peer(b)))
	waitEstablished(t, b, 1)
	waitBest(t, b, "10.244.0.0/26 via 127.0.0.41")
}

// TestRouteReflector: two clients learn each other's routes through a
// reflector with the originator's next hop.
func TestRouteReflector(t *testing.T) {
	rr := newNode(t, "rr", "127.0.0.51", 64512)
	c1 := newNode(t, "c1", "127.0.0.52", 64512)
	c2 := newNode(t, "c2", "127.0.0.53", 64512)
	p1, p2 := c1.peer(rr), c2.peer(rr)
	p1.RouteReflectorClient, p2.RouteReflectorClient = true, true
	cfg := rr.cfg(nil, p1, p2)
	cfg.ClusterID = netip.MustParseAddr("224.0.0.1")
	apply(t, rr, cfg)
	apply(t, c1, c1.cfg([]string{"10.244.0.0/26"}, rr.peer(c1)))
	apply(t, c2, c2.cfg([]string{"10.244.0.64/26"}, rr.peer(c2)))
	waitBest(t, c1, "10.244.0.64/26 via 127.0.0.53")
	waitBest(t, c2, "10.244.0.0/26 via 127.0.0.52")
}

// TestKeepOriginalNextHop: routes a host passes on to an eBGP peer carry
// the originator's next hop when keepOriginalNextHop is set, its own
// otherwise.
func TestKeepOriginalNextHop(t *testing.T) {
	a := newNode(t, "a", "127.0.0.61", 64512)
	b := newNode(t, "b", "127.0.0.62", 64512)
	ext := newNode(t, "ext", "127.0.0.63", 65000)
	apply(t, a, a.cfg([]string{"10.244.0.0/26"}, b.peer(a)))
	apply(t, ext, ext.cfg(nil, b.peer(ext)))
	toExt := ext.peer(b)
	apply(t, b, b.cfg([]string{"10.244.0.64/26"}, a.peer(b), toExt))
	waitBest(t, ext, "10.244.0.0/26 via 127.0.0.62", "10.244.0.64/26 via 127.0.0.62")

	toExt.KeepOriginalNextHop = true
	apply(t, b, b.cfg([]string{"10.244.0.64/26"}, a.peer(b), toExt))
	waitBest(t, ext, "10.244.0.0/26 via 127.0.0.61", "10.244.0.64/26 via 127.0.0.62")

	toExt.KeepOriginalNextHop = false
	apply(t, b, b.cfg([]string{"10.244.0.64/26"}, a.peer(b), toExt))
	waitBest(t, ext, "10.244.0.0/26 via 127.0.0.62", "10.244.0.64/26 via 127.0.0.62")
}

func TestConfigValidate(t *testing.T) {
	ok := netip.MustParseAddr("10.0.0.1")
	tests := []struct {
		name string
		cfg  bgp.Config
		want string
	}{
		{"router id", bgp.Config{RouterID: netip.MustParseAddr("fd00::1"), ASN: 1}, "routerID"},
		{"asn", bgp.Config{RouterID: ok}, "asn 0"},
		{"peer twice", bgp.Config{RouterID: ok, ASN: 1, Peers: []bgp.Peer{{Address: ok, ASN: 1}, {Address: ok, ASN: 2}}}, "listed twice"},
		{"peer asn", bgp.Config{RouterID: ok, ASN: 1, Peers: []bgp.Peer{{Address: ok}}}, "peers[0] (10.0.0.1): asn 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestPeerStringHidesPassword: a peer's description never carries its password.
func TestPeerStringHidesPassword(t *testing.T) {
	p := bgp.Peer{Address: netip.MustParseAddr("10.0.0.1"), ASN: 1, Password: "hunter2"}
	if s := fmt.Sprint(p); strings.Contains(s, "hunter2") {
		t.Errorf("%q shows the password", s)
	}
}
