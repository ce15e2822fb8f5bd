package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/agent/policy/nft"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// TestPrivilegedAddedContainersReachableBeforeWatch: with the datastore
// watch slowed down (every event 4 s late), containers added one after
// another on a real host — real veths, real nftables policy and
// anti-spoofing, the dataplane resyncing every 100 ms — reach each other
// from the moment their ADDs return, while none of their endpoints has come
// back through the watch (issue 14, item 1). Before the fix, the next ADD's
// sync removed the earlier containers' anti-spoofing and set entries: they
// were blackholed until the watch caught up.
func TestPrivilegedAddedContainersReachableBeforeWatch(t *testing.T) {
	testenv.NeedRoot(t)
	host := testNamespace(t, "tbywh-")
	if err := netns.Do(host.path, func() error {
		for k, v := range map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/default/rp_filter": "0"} {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	const delay = 4 * time.Second
	mem := memstore.New()
	client := datastore.NewClient(mem)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := client.Create(ctx, &api.IPPool{ObjectMeta: api.ObjectMeta{Name: "p"}, Spec: api.IPPoolSpec{CIDR: "10.9.0.0/24", BlockSize: 28}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, &api.Node{ObjectMeta: api.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	drv := nft.New(log, nft.WithNetNS(int(host.fd.Fd())))
	dp := &KernelDataplane{Policy: drv, Log: log}
	a, err := New(Config{Node: "n1", NodeIP: netip.MustParsePrefix("10.1.0.5/24"), MTU: 1500, ResyncInterval: 100 * time.Millisecond},
		&delayedWatchStore{Store: mem, delay: delay}, &wirerIn{ns: host.path, w: endpoint.New(log)}, dp, log)
	if err != nil {
		t.Fatal(err)
	}
	a.nodeIP = a.cfg.NodeIP
	done := make(chan struct{}, 2)
	go func() { _ = a.cache.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	select {
	case <-a.cache.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the cache never listed")
	}
	a.ready.Store(true)
	go func() { _ = a.dataplaneLoop(ctx); done <- struct{}{} }()

	conf, err := cni.ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"net1","type":"tabby","ipam":{"type":"tabby-ipam"}}`))
	if err != nil {
		t.Fatal(err)
	}
	type ctr struct {
		ns   string
		addr netip.Addr
	}
	var ctrs []ctr
	start := time.Now()
	for i := range 3 {
		ns := testNamespace(t, "tbywc-")
		res, err := a.Add(ctx, &cni.Request{Command: "ADD", ContainerID: fmt.Sprintf("burst%d-%s", i, ns.name), NetNS: ns.path, IfName: "eth0", NetConf: conf})
		if err != nil {
			t.Fatalf("ADD %d: %v", i, err)
		}
		c := ctr{ns: ns.path, addr: netip.MustParseAddr(res.IPs[0].Address.IP.String())}
		echoIn(t, c.ns, c.addr)
		ctrs = append(ctrs, c)
	}
	// The second and third ADD need the body the first one's endpoint
	// has (same network, same profile): the engine programs them as map
	// and set elements, without a compile.
	if inc, _ := a.SyncCounts(); inc < 2 {
		t.Errorf("%d ADDs programmed without a compile, want at least 2 of 3", inc)
	}
	// Every pair, again and again for two seconds: all before the watch
	// brings back the first endpoint (4 s after its write).
	for round := 0; time.Since(start) < delay-time.Second; round++ {
		for i, from := range ctrs {
			for j, to := range ctrs {
				if i == j {
					continue
				}
				if err := echoFrom(from.ns, to.addr); err != nil {
					t.Fatalf("round %d, %.1f s after the first ADD: container %d (%s) → container %d (%s): %v",
						round, time.Since(start).Seconds(), i, from.addr, j, to.addr, err)
				}
			}
		}
	}
}

// wirerIn runs the kernel wirer's host side in a test's host namespace.
type wirerIn struct {
	ns string
	w  *endpoint.Wirer
}

func (w *wirerIn) Add(ctx context.Context, cfg endpoint.Config) (r endpoint.Result, err error) {
	err = netns.Do(w.ns, func() error { r, err = w.w.Add(ctx, cfg); return err })
	return r, err
}

func (w *wirerIn) Del(ctx context.Context, id, ifName, ns string) error {
	return netns.Do(w.ns, func() error { return w.w.Del(ctx, id, ifName, ns) })
}

func (w *wirerIn) Check(ctx context.Context, cfg endpoint.Config) error {
	return netns.Do(w.ns, func() error { return w.w.Check(ctx, cfg) })
}

func (w *wirerIn) List(ctx context.Context) (hs []endpoint.HostEndpoint, err error) {
	err = netns.Do(w.ns, func() error { hs, err = w.w.List(ctx); return err })
	return hs, err
}

func (w *wirerIn) DeleteHostIf(ctx context.Context, name string) error {
	return netns.Do(w.ns, func() error { return w.w.DeleteHostIf(ctx, name) })
}

// delayedWatchStore hands every watch event on delay after it happened.
type delayedWatchStore struct {
	datastore.Store
	delay time.Duration
}

func (s *delayedWatchStore) Watch(ctx context.Context, prefix string, from int64) <-chan datastore.Event {
	in := s.Store.Watch(ctx, prefix, from)
	type timed struct {
		ev datastore.Event
		at time.Time
	}
	queue := make(chan timed, 4096)
	out := make(chan datastore.Event)
	go func() {
		defer close(queue)
		for ev := range in {
			queue <- timed{ev, time.Now()}
		}
	}()
	go func() {
		defer close(out)
		for q := range queue {
			select {
			case <-time.After(time.Until(q.at.Add(s.delay))):
			case <-ctx.Done():
				continue // drain: the first goroutine ends with in
			}
			select {
			case out <- q.ev:
			case <-ctx.Done():
			}
		}
	}()
	return out
}

type testNS struct {
	name, path string
	fd         *os.File
}

// testNamespace creates a uniquely named network namespace with lo up,
// removed at the end of the test.
func testNamespace(t *testing.T, prefix string) testNS {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	f, err := netns.Open(path)
	if err != nil {
		_ = netns.Delete(name)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if err := netns.Do(path, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	return testNS{name: name, path: path, fd: f}
}

// echoIn serves a TCP echo on addr:8080 inside a namespace.
func echoIn(t *testing.T, ns string, addr netip.Addr) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 8080).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
}

// echoFrom sends 4 bytes from a namespace to addr:8080 and reads them back.
func echoFrom(ns string, to netip.Addr) error {
	return netns.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(to, 8080).String(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return err
	})
}
