package embedded_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/embedded"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
)

// freePorts returns n loopback ports free right now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// TestCluster runs three members, stops the leader under a watching,
// writing client, and checks that writes go on, the watch sees every
// change once, and the stopped member catches up when it returns.
func TestCluster(t *testing.T) {
	names := []string{"a", "b", "c"}
	ports := freePorts(t, 2*len(names))
	var initial []string
	for i, n := range names {
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%d", n, ports[2*i+1]))
	}
	var servers []*embedded.Server
	var endpoints []string
	dir := t.TempDir()
	for i, n := range names {
		srv, err := embedded.New(embedded.Config{
			Name:           n,
			DataDir:        filepath.Join(dir, n),
			ListenClient:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			ListenPeer:     fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			InitialCluster: strings.Join(initial, ","),
			UnsafeNoFsync:  true,
			Logger:         etcdtest.Logger(t).With("member", n),
		})
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, srv)
		endpoints = append(endpoints, srv.ClientURL())
		t.Cleanup(func() { _ = srv.Stop() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Each Start waits for a leader, which needs a quorum: start together.
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, srv := range servers {
		wg.Go(func() { errs[i] = srv.Start(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start %s: %v", names[i], err)
		}
	}

	s, err := etcd.New(etcd.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.Watch(ctx, "/cluster/", 0)
	var revs []int64
	write := func(i int) {
		t.Helper()
		for {
			rev, err := s.Create(ctx, fmt.Sprintf("/cluster/%02d", i), []byte("x"))
			if err == nil {
				revs = append(revs, rev)
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("create %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // leader election in progress
		}
	}
	for i := range 5 {
		write(i)
	}
	leader := -1
	for i, srv := range servers {
		if srv.IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no member is leader")
	}
	if err := servers[leader].Stop(); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		write(i)
	}
	for i, want := range revs {
		select {
		case e := <-w:
			if e.Type != datastore.EventPut || e.KV.Revision != want {
				t.Fatalf("event %d: got %+v (err %v), want a put at %d", i, e.KV, e.Err, want)
			}
		case <-ctx.Done():
			t.Fatalf("got %d of %d events", i, len(revs))
		}
	}

	// The old leader comes back and catches up.
	if err := servers[leader].Start(ctx); err != nil {
		t.Fatalf("restart %s: %v", names[leader], err)
	}
	only, err := etcd.New(etcd.Config{Endpoints: []string{servers[leader].ClientURL()}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer only.Close()
	kvs, _, err := only.List(ctx, "/cluster/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != len(revs) {
		t.Errorf("restarted member lists %d keys, want %d", len(kvs), len(revs))
	}
}
