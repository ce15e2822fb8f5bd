package dns

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// clientNS is a private network namespace whose loopback holds client
// addresses that are not loopback addresses, so a test can query from
// "outside" without any traffic leaving the namespace.
type clientNS struct {
	path string
}

func newClientNS(t *testing.T, addrs ...string) *clientNS {
	t.Helper()
	testenv.NeedRoot(t)
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "tdns" + hex.EncodeToString(b[:])
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { _ = netns.Delete(name) })
	cmds := [][]string{{"link", "set", "lo", "up"}}
	for _, a := range addrs {
		cmds = append(cmds, []string{"addr", "add", a + "/32", "dev", "lo"})
	}
	for _, args := range cmds {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	return &clientNS{path: path}
}

// query asks server over network from the source address from, inside
// the namespace.
func (c *clientNS) query(t *testing.T, server, network, from, name string) *mdns.Msg {
	t.Helper()
	var resp *mdns.Msg
	err := netns.Do(c.path, func() error {
		cl := &mdns.Client{Net: network, Timeout: 10 * time.Second, Dialer: &net.Dialer{Timeout: 10 * time.Second}}
		if network == "udp" {
			cl.Dialer.LocalAddr = &net.UDPAddr{IP: net.ParseIP(from)}
		} else {
			cl.Dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
		}
		var err error
		resp, _, err = cl.Exchange(new(mdns.Msg).SetQuestion(name, mdns.TypeA), server)
		return err
	})
	if err != nil {
		t.Fatalf("query %s over %s from %s: %v", name, network, from, err)
	}
	return resp
}

// get sends GET path to addr from inside the namespace (by hand: the
// net/http transport dials on goroutines of its own, outside it) and
// returns the status code.
func (c *clientNS) get(addr, path string) (int, error) {
	code := 0
	err := netns.Do(c.path, func() error {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		code = resp.StatusCode
		return nil
	})
	return code, err
}

// startServerIn runs a server with the default config (except ports,
// upstreams and edit) whose sockets live in the namespace.
func startServerIn(t *testing.T, c *clientNS, store datastore.Store, edit func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Port, cfg.HTTPPort = 0, 0
	cfg.Timeout = 2
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg, Options{Store: store, Logger: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := netns.Do(c.path, srv.Listen); err != nil {
		t.Fatalf("Listen in the namespace: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the server to be ready", func() bool { return srv.snap.Load().ready })
	return srv
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// TestPrivilegedForwardDefaults shows the safe defaults with real queries
// over UDP and TCP: names outside our zones are forwarded (to a stub
// upstream on loopback) only for loopback, pool and node clients; anyone
// else gets REFUSED for them but still gets our zones' answers; and the
// HTTP API listens on loopback only.
func TestPrivilegedForwardDefaults(t *testing.T) {
	const (
		outsider = "10.123.0.1"
		nodeNet  = "10.124.0.9" // in node n1's 10.124.0.0/24
		inPool   = "10.125.0.7" // in pool 10.125.0.0/16
		later    = "10.126.0.3" // in a pool created while serving
	)
	ns := newClientNS(t, outsider, nodeNet, inPool, later)
	up := startStubUpstream(t, "default")
	store := etcdtest.New(t)
	c := datastore.NewClient(store)
	mustCreate(t, c, testNode("n1", "10.124.0.1"))
	mustCreate(t, c, &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "p"}, Spec: api.IPPoolSpec{CIDR: "10.125.0.0/16"}})
	mustCreate(t, c, testEndpoint("shop", "n1-web-1-eth0", "n1", "web", "10.125.0.20"))
	srv := startServerIn(t, ns, store, func(cfg *Config) { cfg.Resolvers = []string{up.addr} })
	server := net.JoinHostPort(outsider, portOf(srv.DNSAddr()))
	waitFor(t, "web.shop.mesos", func() bool {
		return len(ns.query(t, server, "udp", "127.0.0.1", "web.shop.mesos.").Answer) == 1
	})

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			for _, from := range []string{"127.0.0.1", nodeNet, inPool} {
				if resp := ns.query(t, server, network, from, "example.test."); resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) == 0 {
					t.Errorf("from %s: example.test. got %s with %d answers; want it forwarded", from, mdns.RcodeToString[resp.Rcode], len(resp.Answer))
				}
			}
			before := up.udp.Load() + up.tcp.Load()
			if resp := ns.query(t, server, network, outsider, "example.test."); resp.Rcode != mdns.RcodeRefused || resp.RecursionAvailable {
				t.Errorf("from %s: example.test. got %s (RA %v); want REFUSED without RA", outsider, mdns.RcodeToString[resp.Rcode], resp.RecursionAvailable)
			}
			if n := up.udp.Load() + up.tcp.Load(); n != before {
				t.Errorf("the upstream was asked %d times for a refused client", n-before)
			}
			resp := ns.query(t, server, network, outsider, "web.shop.mesos.")
			if got := rrStrings(resp.Answer); resp.Rcode != mdns.RcodeSuccess || len(got) != 1 || got[0] != "A 10.125.0.20" {
				t.Errorf("from %s: web.shop.mesos. got %s %v; want our zone's answer A 10.125.0.20", outsider, mdns.RcodeToString[resp.Rcode], got)
			}
		})
	}

	// A pool created while serving widens the list.
	mustCreate(t, c, &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "p2"}, Spec: api.IPPoolSpec{CIDR: "10.126.0.0/16"}})
	waitFor(t, "the new pool's clients to be forwarded for", func() bool {
		return ns.query(t, server, "udp", later, "example.test.").Rcode == mdns.RcodeSuccess
	})

	// The HTTP API (it enumerates every record) is on loopback only.
	port := portOf(srv.HTTPAddr())
	if code, err := ns.get("127.0.0.1:"+port, "/v1/version"); err != nil || code != http.StatusOK {
		t.Errorf("GET /v1/version on loopback: %d, %v; want 200", code, err)
	}
	if _, err := ns.get(outsider+":"+port, "/v1/enumerate"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET /v1/enumerate on %s: %v; want connection refused", outsider, err)
	}
}

// TestPrivilegedForwardAllowWidens: ForwardAllow and ForwardAllowAny
// (--forward-allow, --forward-allow-any) let other clients recurse.
func TestPrivilegedForwardAllowWidens(t *testing.T) {
	const outsider, other = "10.123.0.1", "10.127.0.1"
	ns := newClientNS(t, outsider, other)
	up := startStubUpstream(t, "default")
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		allowed map[string]bool
	}{
		{"forward-allow", func(c *Config) { c.ForwardAllow = []string{"10.123.0.0/24"} }, map[string]bool{outsider: true, other: false}},
		{"forward-allow-any", func(c *Config) { c.ForwardAllowAny = true }, map[string]bool{outsider: true, other: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServerIn(t, ns, nil, func(c *Config) { c.Resolvers = []string{up.addr}; tc.edit(c) })
			server := net.JoinHostPort(outsider, portOf(srv.DNSAddr()))
			for from, ok := range tc.allowed {
				want := mdns.RcodeRefused
				if ok {
					want = mdns.RcodeSuccess
				}
				if resp := ns.query(t, server, "udp", from, "example.test."); resp.Rcode != want {
					t.Errorf("from %s: %s; want %s", from, mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[want])
				}
			}
		})
	}
}
