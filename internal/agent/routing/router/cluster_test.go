package router_test

// A small cluster for the privileged tests: a fabric namespace with a
// bridge, host namespaces each running a Router (a child process, see
// host_test.go) against one etcd, and containers wired to the hosts.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing/routingtest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/lab"
)

// clusterWait bounds every wait for convergence (generous: the machine
// is shared).
const clusterWait = 60 * time.Second

type cluster struct {
	t      *testing.T
	s      string
	fabric string
	etcd   []string
	store  datastore.Store
	client *datastore.Client
	ipam   *ipam.IPAM
	dir    string
	hosts  map[string]*host
	ncont  int
}

type host struct {
	name   string
	ns     string
	ip     netip.Prefix
	status string
	opts   hostConfig
	cmd    *exec.Cmd
	done   chan struct{}
	log    *bytes.Buffer
	logMu  *sync.Mutex
}

type syncBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// newCluster makes the fabric (192.0.2.0/24 on a bridge) and the etcd.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	routingtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("-short: skipping the multi-host cluster test")
	}
	_, ecfg := etcdtest.NewServerWith(t, etcdtest.Options{Unix: true})
	store, err := etcd.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	dir, err := os.MkdirTemp("", "tbyr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &cluster{t: t, s: routingtest.Suffix(t), etcd: ecfg.Endpoints, store: store, client: datastore.NewClient(store),
		ipam: ipam.New(store, nil), dir: dir, hosts: map[string]*host{}}
	c.fabric = routingtest.NewNS(t, "tbyrf-"+c.s)
	routingtest.IP(t, "-n", c.fabric, "link", "add", "br0", "type", "bridge")
	routingtest.IP(t, "-n", c.fabric, "link", "set", "br0", "up")
	return c
}

// attach makes a namespace's eth0 a port of the fabric bridge.
func (c *cluster) attach(ns, port, addr string) {
	c.t.Helper()
	routingtest.IP(c.t, "-n", c.fabric, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	routingtest.IP(c.t, "-n", c.fabric, "link", "set", port, "master", "br0", "up")
	routingtest.IP(c.t, "-n", ns, "addr", "add", addr, "dev", "eth0")
	routingtest.IP(c.t, "-n", ns, "link", "set", "eth0", "up")
}

// addHost makes host name with address ip (192.0.2.x/24) and its Node.
func (c *cluster) addHost(name, ip string, node func(*api.Node)) *host {
	c.t.Helper()
	h := &host{name: name, ns: routingtest.NewNS(c.t, "tbyr"+name+"-"+c.s), ip: netip.MustParsePrefix(ip),
		status: filepath.Join(c.dir, name+".sock"), log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	c.attach(h.ns, name, ip)
	// Proxy ARP answers containers for 169.254.1.1 only with a route to it.
	routingtest.IP(c.t, "-n", h.ns, "route", "add", "default", "via", "192.0.2.1")
	n := &api.Node{ObjectMeta: api.ObjectMeta{Name: name}, Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: ip}}}
	if node != nil {
		node(n)
	}
	c.create(n)
	c.hosts[name] = h
	c.t.Cleanup(func() {
		if c.t.Failed() {
			h.logMu.Lock()
			c.t.Logf("log of host %s:\n%s", name, h.log.String())
			h.logMu.Unlock()
		}
	})
	return h
}

func (c *cluster) create(rs ...api.Resource) {
	c.t.Helper()
	for _, r := range rs {
		if _, err := c.client.Create(context.Background(), r); err != nil {
			c.t.Fatalf("create %s %s: %v", r.KindInfo().Kind, r.GetObjectMeta().Name, err)
		}
	}
}

// start runs the host's router (a child process in its namespace).
func (c *cluster) start(h *host, opts hostConfig) {
	c.t.Helper()
	opts.Node, opts.NodeIP, opts.Etcd, opts.Status = h.name, h.ip.String(), c.etcd, h.status
	if opts.SyncTimeout == 0 {
		opts.SyncTimeout = 20 * time.Second
	}
	h.opts = opts
	raw, _ := json.Marshal(opts)
	_ = os.Remove(h.status)
	cmd := exec.Command("ip", "netns", "exec", h.ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hostEnv+"="+string(raw))
	w := syncBuffer{mu: h.logMu, b: h.log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start host %s: %v", h.name, err)
	}
	h.cmd, h.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(h.done) }()
	c.t.Cleanup(func() { c.stop(h, syscall.SIGKILL) })
}

// stop ends the host's router with sig (SIGTERM: graceful) and waits.
func (c *cluster) stop(h *host, sig syscall.Signal) {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Signal(sig)
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
	h.cmd = nil
}

// status reads a host's router status.
func (c *cluster) status(h *host) (*statusDoc, error) {
	cl := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", h.status)
		}}}
	resp, err := cl.Get("http://router/status/bgp")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st statusDoc
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

type statusDoc struct {
	Peers []struct {
		Address, Type, State, Info, BFD string
		Since                           time.Time
	} `json:"peers"`
	Routes   []string `json:"routes"`
	Problems []string `json:"problems"`
}

// container allocates an address for a container on h (IPAM, as the agent
// does) and wires a namespace with it.
func (c *cluster) container(h *host) (string, netip.Addr) {
	c.t.Helper()
	c.ncont++
	handle := fmt.Sprintf("net.c%d.eth0", c.ncont)
	as, err := c.ipam.Allocate(context.Background(), ipam.Request{Handle: handle, Node: h.name, IPv4: 1})
	if err != nil {
		c.t.Fatalf("allocate for a container on %s: %v", h.name, err)
	}
	a := as[0].Addr
	ns := routingtest.Container(c.t, h.ns, fmt.Sprintf("tbyrc%d-%s", c.ncont, c.s), fmt.Sprintf("tby%s%d", c.s, c.ncont), a)
	return ns, a
}

// routes lists the routes Tabby's router made on h.
func (c *cluster) routes(h *host) string {
	return routingtest.IP(c.t, "-n", h.ns, "route", "show", "proto", "85")
}

// waitRoute waits until h has (or, with present false, lacks) a route
// whose line contains want.
func (c *cluster) waitRoute(h *host, want string, present bool) {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		out := c.routes(h)
		if strings.Contains(out, want) == present {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("host %s: route %q present=%v not reached in %s; routes:\n%s", h.name, want, !present, clusterWait, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reach checks ICMP and TCP from container ns to addr (in container dst).
func (c *cluster) reach(from string, to string, addr netip.Addr) {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		err := routingtest.Ping(from, addr, 1)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no ICMP from %s to %s: %v", from, addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := routingtest.Ping(from, addr, 3); err != nil {
		c.t.Fatal(err)
	}
	if err := lab.TCPEchoIn(from, to, addr); err != nil {
		c.t.Fatalf("TCP from %s to %s: %v", from, addr, err)
	}
}

func ipPool(name, cidr, ipip, vxlan string) *api.IPPool {
	return &api.IPPool{ObjectMeta: api.ObjectMeta{Name: name}, Spec: api.IPPoolSpec{CIDR: cidr, IPIPMode: ipip, VXLANMode: vxlan, BlockSize: 26}}
}
