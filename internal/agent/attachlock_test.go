package agent

import (
	"context"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/ipam"
)

// slowWirer blocks Add until released, so a test can land a DEL in the
// middle of an ADD.
type slowWirer struct {
	endpoint.Dataplane
	entered chan struct{}
	release chan struct{}
}

func (w *slowWirer) Add(ctx context.Context, cfg endpoint.Config) (endpoint.Result, error) {
	close(w.entered)
	<-w.release
	return w.Dataplane.Add(ctx, cfg)
}

// TestDelDuringAddLeavesNothing: the runtime's plugin call timed out and
// it sent DEL while the agent was still wiring the ADD. Whichever way the
// two meet, the attachment ends with no endpoint, address or interface
// (issue 14, item 3). Without the per-attachment lock the DEL ran first
// and the ADD, finishing last, left all three behind.
func TestDelDuringAddLeavesNothing(t *testing.T) {
	g := newReaperRig(t)
	a := g.a
	sw := &slowWirer{Dataplane: g.wirer, entered: make(chan struct{}), release: make(chan struct{})}
	a.wirer = sw
	a.cache = newCache(a.client, []string{"WorkloadEndpoint", "Profile"}, a.log)
	a.cfg.ResyncInterval = time.Hour
	a.syncReqs = make(chan chan error, 16)
	a.ready.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); _ = a.dataplaneLoop(ctx) }()
	t.Cleanup(func() { cancel(); <-loopDone })

	conf, err := cni.ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"net1","type":"tabby","ipam":{"type":"tabby-ipam"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req := func(cmd string) *cni.Request {
		return &cni.Request{Command: cmd, ContainerID: "c1", NetNS: "/var/run/netns/fake-c1", IfName: "eth0", NetConf: conf}
	}
	addDone := make(chan error, 1)
	go func() { _, err := a.Add(ctx, req("ADD")); addDone <- err }()
	select {
	case <-sw.entered:
	case err := <-addDone:
		t.Fatalf("ADD ended before wiring: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("ADD never reached the wiring step")
	}
	delDone := make(chan error, 1)
	go func() { delDone <- a.Del(ctx, req("DEL")) }()
	// Give an unserialised DEL the chance to finish first (it did, in
	// well under this, before the fix); a serialised one waits.
	select {
	case <-delDone:
		delDone <- nil
	case <-time.After(500 * time.Millisecond):
	}
	close(sw.release)
	if err := <-addDone; err != nil {
		t.Logf("ADD: %v", err)
	}
	if err := <-delDone; err != nil {
		t.Fatalf("DEL: %v", err)
	}

	if eps, _, err := a.client.List(ctx, "WorkloadEndpoint", ""); err != nil || len(eps) != 0 {
		t.Errorf("endpoints after ADD then DEL: %d (%v); want none", len(eps), err)
	}
	if addrs, err := a.ipam.HandleAddrs(ctx, ipam.HandleID("net1", "c1", "eth0")); err != nil || len(addrs) != 0 {
		t.Errorf("addresses after ADD then DEL: %v (%v); want none", addrs, err)
	}
	if ifs, err := g.wirer.List(ctx); err != nil || len(ifs) != 0 {
		t.Errorf("interfaces after ADD then DEL: %v (%v); want none", ifs, err)
	}
	if n := a.attach.size(); n != 0 {
		t.Errorf("%d attachment locks left; want 0", n)
	}
}

// TestAttachLocks: one holder per attachment, waiters give up with their
// context, other attachments never wait, and no entry outlives its users.
func TestAttachLocks(t *testing.T) {
	var l attachLocks
	ctx := context.Background()
	unlock, err := l.lock(ctx, "net1.c1.eth0")
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.lock(ctx, "net1.c2.eth0")
	if err != nil {
		t.Fatalf("another attachment waited: %v", err)
	}
	other()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.lock(short, "net1.c1.eth0"); err == nil {
		t.Fatal("a second holder of a locked attachment got the lock")
	}
	unlock()
	again, err := l.lock(ctx, "net1.c1.eth0")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
	if n := l.size(); n != 0 {
		t.Errorf("%d entries left; want 0", n)
	}
}
