package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/agent/routing/bgp"
	"github.com/tabbynet/tabby/internal/agent/routing/kernel/kerneltest"
	"github.com/tabbynet/tabby/internal/agent/routing/router"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/ipam"
)

const waitFor = 20 * time.Second

// fakeSpeaker records the configurations it is given and serves the
// paths and sessions a test sets.
type fakeSpeaker struct {
	mu      sync.Mutex
	cfg     *bgp.Config
	applies int
	best    []bgp.Path
	peers   []bgp.PeerStatus
	changed chan struct{}
}

func newFakeSpeaker() *fakeSpeaker { return &fakeSpeaker{changed: make(chan struct{}, 1)} }

func (f *fakeSpeaker) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (f *fakeSpeaker) Apply(_ context.Context, c *bgp.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg, f.applies = c, f.applies+1
	return nil
}

func (f *fakeSpeaker) Best() ([]bgp.Path, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.best), nil
}

func (f *fakeSpeaker) Peers(context.Context) ([]bgp.PeerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.peers), nil
}

func (f *fakeSpeaker) Changed() <-chan struct{} { return f.changed }

func (f *fakeSpeaker) set(best []bgp.Path, peers []bgp.PeerStatus) {
	f.mu.Lock()
	f.best, f.peers = best, peers
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *fakeSpeaker) config() *bgp.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

// env is a router on a memstore with a fake kernel and speaker.
type env struct {
	store   datastore.Store
	client  *datastore.Client
	ipam    *ipam.IPAM
	kernel  *kerneltest.Fake
	speaker *fakeSpeaker
	r       *router.Router
}

func newEnv(t *testing.T, cfg router.Config) *env {
	t.Helper()
	s := memstore.New()
	e := &env{store: s, client: datastore.NewClient(s), ipam: ipam.New(s, nil), kernel: kerneltest.NewFake(), speaker: newFakeSpeaker()}
	cfg.Node = "h1"
	cfg.Kernel, cfg.Speaker = e.kernel, e.speaker
	r, err := router.New(cfg, s, etcdtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func (e *env) create(t *testing.T, rs ...api.Resource) {
	t.Helper()
	for _, r := range rs {
		if _, err := e.client.Create(context.Background(), r); err != nil {
			t.Fatalf("create %s: %v", r.GetObjectMeta().Name, err)
		}
	}
}

func (e *env) alloc(t *testing.T, node, handle string) netip.Addr {
	t.Helper()
	as, err := e.ipam.Allocate(context.Background(), ipam.Request{Handle: handle, Node: node, IPv4: 1})
	if err != nil {
		t.Fatal(err)
	}
	return as[0].Addr
}

// input reads the resources back as the agent would hand them over.
func (e *env) input(t *testing.T) *routing.Input {
	t.Helper()
	ctx := context.Background()
	in := &routing.Input{Node: "h1"}
	nodes, _, err := e.client.List(ctx, "Node", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		in.Nodes = append(in.Nodes, n.(*api.Node))
		if n.GetObjectMeta().Name == "h1" {
			in.NodeIP = netip.MustParsePrefix(n.(*api.Node).Spec.BGP.IPv4Address)
		}
	}
	pools, _, err := e.client.List(ctx, "IPPool", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pools {
		in.Pools = append(in.Pools, p.(*api.IPPool))
	}
	peers, _, err := e.client.List(ctx, "BGPPeer", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		in.Peers = append(in.Peers, p.(*api.BGPPeer))
	}
	return in
}

func node(name, ip string) *api.Node {
	return &api.Node{ObjectMeta: api.ObjectMeta{Name: name}, Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: ip}}}
}

func pool(cidr, vxlan string) *api.IPPool {
	return &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.IPPoolSpec{CIDR: cidr, VXLANMode: vxlan, BlockSize: 26}}
}

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
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in %s; last: %s", what, waitFor, last)
}

func waitRoutes(t *testing.T, e *env, want ...string) {
	t.Helper()
	eventually(t, "kernel routes", func() (bool, string) {
		var got []string
		for _, r := range e.kernel.State().Routes {
			got = append(got, r.String())
		}
		return slices.Equal(got, want), strings.Join(got, "; ")
	})
}

func TestNothingBeforeTheFirstUpdate(t *testing.T) {
	e := newEnv(t, router.Config{})
	e.create(t, node("h1", "10.0.0.1/24"), pool("10.244.0.0/16", "Never"))
	e.alloc(t, "h1", "c1")
	time.Sleep(300 * time.Millisecond)
	if n := e.kernel.Applies; n != 0 {
		t.Errorf("kernel applied %d times before the agent's first view", n)
	}
	if !e.kernel.Forwarding {
		t.Errorf("forwarding not enabled")
	}
}

func blockOf(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 26).Masked() }

func TestBlocksAdvertisedAndLearned(t *testing.T) {
	e := newEnv(t, router.Config{SyncTimeout: time.Hour})
	e.create(t, node("h1", "10.0.0.1/24"), node("h2", "10.0.0.2/24"), pool("10.244.0.0/16", "Never"))
	own := blockOf(e.alloc(t, "h1", "c1"))
	other := blockOf(e.alloc(t, "h2", "c2"))
	blackhole := "blackhole " + own.String()
	e.r.Update(e.input(t))
	waitRoutes(t, e, blackhole)
	eventually(t, "BGP config", func() (bool, string) {
		c := e.speaker.config()
		if c == nil {
			return false, "none"
		}
		ok := len(c.Peers) == 1 && c.Peers[0].Address == netip.MustParseAddr("10.0.0.2") &&
			slices.Equal(c.Paths, []netip.Prefix{own}) && c.NextHop4 == netip.MustParseAddr("10.0.0.1")
		return ok, fmt.Sprintf("%+v", c)
	})

	// A learned path becomes a route; while BGP has not re-synced after
	// the start, a vanished path's route stays.
	h2 := bgp.PeerStatus{Address: netip.MustParseAddr("10.0.0.2"), State: "Established"}
	learned := bgp.Path{Prefix: other, NextHop: netip.MustParseAddr("10.0.0.2")}
	via := other.String() + " via 10.0.0.2 dev up0"
	e.speaker.set([]bgp.Path{learned}, []bgp.PeerStatus{h2})
	waitRoutes(t, e, sorted(via, blackhole)...)
	e.speaker.set(nil, []bgp.PeerStatus{h2})
	time.Sleep(200 * time.Millisecond)
	waitRoutes(t, e, sorted(via, blackhole)...)
	// End-of-RIB from every peer: stale routes go.
	h2.EndOfRIB = true
	e.speaker.set(nil, []bgp.PeerStatus{h2})
	waitRoutes(t, e, blackhole)
	if st := e.r.Status(); !st.Synced || len(st.Peers) != 1 || st.Peers[0].State != "up" || st.Peers[0].Type != string(routing.PeerMesh) {
		t.Errorf("status %+v: want synced with one mesh peer up", st)
	}

	// A released block is withdrawn and its blackhole removed.
	if _, err := e.ipam.ReleaseHandle(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a block seen empty on two passes is released
		if _, err := e.ipam.GC(context.Background(), ipam.GCOptions{Node: "h1"}); err != nil {
			t.Fatalf("GC: %v", err)
		}
	}
	waitRoutes(t, e)
	eventually(t, "advert withdrawn", func() (bool, string) {
		c := e.speaker.config()
		return len(c.Paths) == 0, fmt.Sprint(c.Paths)
	})
}

func sorted(routes ...string) []string {
	rs := make([]routing.Route, 0, len(routes))
	byText := map[string]string{}
	for _, r := range routes {
		f := strings.Fields(r)
		dst := f[0]
		if f[0] == "blackhole" {
			dst = f[1]
		}
		rs = append(rs, routing.Route{Dst: netip.MustParsePrefix(dst)})
		byText[dst] = r
	}
	slices.SortFunc(rs, routing.CompareRoutes)
	out := []string{}
	for _, r := range rs {
		out = append(out, byText[r.Dst.String()])
	}
	return out
}

func TestSyncTimeoutRemovesStale(t *testing.T) {
	e := newEnv(t, router.Config{SyncTimeout: 500 * time.Millisecond})
	e.create(t, node("h1", "10.0.0.1/24"), node("h2", "10.0.0.2/24"), pool("10.244.0.0/16", "Never"))
	learned := bgp.Path{Prefix: netip.MustParsePrefix("10.244.7.0/26"), NextHop: netip.MustParseAddr("10.0.0.2")}
	e.speaker.set([]bgp.Path{learned}, []bgp.PeerStatus{{Address: netip.MustParseAddr("10.0.0.2"), State: "Active"}})
	e.r.Update(e.input(t))
	waitRoutes(t, e, "10.244.7.0/26 via 10.0.0.2 dev up0")
	e.speaker.set(nil, []bgp.PeerStatus{{Address: netip.MustParseAddr("10.0.0.2"), State: "Active"}})
	waitRoutes(t, e)
}

// TestVXLANTunnelAddress: a VXLAN pool gives the node a tunnel address
// and MAC (written into its Node), the device appears once the agent's
// view has them, and they are released when the pool stops using VXLAN.
func TestVXLANTunnelAddress(t *testing.T) {
	e := newEnv(t, router.Config{DisableBGP: true})
	e.create(t, node("h1", "10.0.0.1/24"), node("h2", "10.0.0.2/24"), pool("10.244.0.0/16", "Always"))
	e.r.Update(e.input(t))
	var tun string
	eventually(t, "tunnel address in the Node", func() (bool, string) {
		n, err := e.client.Get(context.Background(), "Node", "", "h1")
		if err != nil {
			return false, err.Error()
		}
		tun = n.(*api.Node).Spec.IPv4VXLANTunnelAddr
		return tun != "" && n.(*api.Node).Spec.VXLANTunnelMACAddr != "", tun
	})
	// A stale view (without the new fields) changes neither address nor MAC.
	stale := e.input(t)
	for _, n := range stale.Nodes {
		n.Spec.IPv4VXLANTunnelAddr, n.Spec.VXLANTunnelMACAddr = "", ""
	}
	before, _ := e.client.Get(context.Background(), "Node", "", "h1")
	for range 3 {
		e.r.Update(stale)
		time.Sleep(50 * time.Millisecond)
	}
	after, _ := e.client.Get(context.Background(), "Node", "", "h1")
	if b, a := before.(*api.Node).Spec, after.(*api.Node).Spec; b.IPv4VXLANTunnelAddr != a.IPv4VXLANTunnelAddr || b.VXLANTunnelMACAddr != a.VXLANTunnelMACAddr {
		t.Errorf("a stale view changed the tunnel: %s %s → %s %s", b.IPv4VXLANTunnelAddr, b.VXLANTunnelMACAddr, a.IPv4VXLANTunnelAddr, a.VXLANTunnelMACAddr)
	}
	addrs, err := e.ipam.HandleAddrs(context.Background(), ipam.VXLANTunnelHandlePrefix+"h1")
	if err != nil || len(addrs) != 1 || addrs[0].String() != tun {
		t.Fatalf("tunnel handle holds %v (%v), want %s", addrs, err, tun)
	}
	e.r.Update(e.input(t))
	eventually(t, "VXLAN device", func() (bool, string) {
		v := e.kernel.State().VXLAN
		return v != nil && v.Addr.String() == tun, e.kernel.State().Render()
	})
	if e.speaker.config() != nil {
		t.Errorf("BGP configured with DisableBGP")
	}

	p, err := e.client.Get(context.Background(), "IPPool", "", "default")
	if err != nil {
		t.Fatal(err)
	}
	p.(*api.IPPool).Spec.VXLANMode = "Never"
	if _, err := e.client.Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	e.r.Update(e.input(t))
	eventually(t, "tunnel address released", func() (bool, string) {
		n, _ := e.client.Get(context.Background(), "Node", "", "h1")
		addrs, _ := e.ipam.HandleAddrs(context.Background(), ipam.VXLANTunnelHandlePrefix+"h1")
		return n.(*api.Node).Spec.IPv4VXLANTunnelAddr == "" && len(addrs) == 0, n.(*api.Node).Spec.IPv4VXLANTunnelAddr
	})
	e.r.Update(e.input(t))
	eventually(t, "VXLAN device removed", func() (bool, string) {
		return e.kernel.State().VXLAN == nil, e.kernel.State().Render()
	})
}

// TestPasswords: a password file is read (and its newline dropped); a
// Kubernetes secret reference is reported and the peer left out.
func TestPasswords(t *testing.T) {
	e := newEnv(t, router.Config{})
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.create(t, node("h1", "10.0.0.1/24"), pool("10.244.0.0/16", "Never"),
		&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: "tor"}, Spec: api.BGPPeerSpec{PeerIP: "10.0.0.254", ASNumber: 65000, Password: &api.BGPPassword{File: file}}},
		&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: "k8s"}, Spec: api.BGPPeerSpec{PeerIP: "10.0.0.253", ASNumber: 65000, Password: &api.BGPPassword{SecretKeyRef: &api.SecretKeyRef{Name: "bgp", Key: "pw"}}}})
	e.r.Update(e.input(t))
	eventually(t, "BGP peers", func() (bool, string) {
		c := e.speaker.config()
		return c != nil && len(c.Peers) == 1 && c.Peers[0].Password == "s3cret", "waiting"
	})
	st := e.r.Status()
	found := false
	for _, p := range st.Problems {
		found = found || strings.Contains(p, "secretKeyRef")
	}
	if !found {
		t.Errorf("problems %q do not mention the secret reference", st.Problems)
	}
	raw, _ := json.Marshal(st)
	if strings.Contains(string(raw), "s3cret") {
		t.Errorf("status shows the password: %s", raw)
	}
}

func TestStatusHandler(t *testing.T) {
	e := newEnv(t, router.Config{})
	e.create(t, node("h1", "10.0.0.1/24"), node("h2", "10.0.0.2/24"), pool("10.244.0.0/16", "Never"))
	e.r.Update(e.input(t))
	eventually(t, "a pass", func() (bool, string) { return e.speaker.config() != nil, "" })
	e.speaker.set(nil, []bgp.PeerStatus{{Address: netip.MustParseAddr("10.0.0.2"), State: "Active", Info: "dial tcp: connection refused"}})
	rec := httptest.NewRecorder()
	e.r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", router.StatusPath, nil))
	var st router.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	if len(st.Peers) != 1 {
		t.Fatalf("peers %+v, want one", st.Peers)
	}
	p := st.Peers[0]
	if p.Address != "10.0.0.2" || p.State != "start" || p.Type != "node-to-node mesh" || !strings.Contains(p.Info, "connection refused") || p.Node != "h2" {
		t.Errorf("peer %+v", p)
	}
	if st.BGP == nil || st.BGP.ASN != 64512 || st.BGP.RouterID != "10.0.0.1" {
		t.Errorf("bgp %+v", st.BGP)
	}
}
