package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// TestAddedEndpointStaysInViewBeforeWatch: in a burst of ADDs whose watch
// has not delivered their endpoints yet (here it never does: the cache's
// watch is not running), every endpoint is in what the dataplane programs
// from the moment its ADD returns, so no sync in between removes its
// policy and anti-spoofing entries (issue 14, item 1). Before the fix an
// endpoint was in the view only while its ADD ran.
func TestAddedEndpointStaysInViewBeforeWatch(t *testing.T) {
	g := newReaperRig(t)
	a := g.a
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
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			cid := fmt.Sprintf("burst%d", i)
			_, errs[i] = a.Add(ctx, &cni.Request{Command: "ADD", ContainerID: cid, NetNS: "/var/run/netns/fake-" + cid, IfName: "eth0", NetConf: conf})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ADD %d: %v", i, err)
		}
	}
	v, _ := a.viewAt(time.Now())
	in := map[string]bool{}
	for _, w := range v.Endpoints {
		in[w.Spec.ContainerID] = len(w.Spec.IPNetworks) == 1
	}
	for i := range n {
		if cid := fmt.Sprintf("burst%d", i); !in[cid] {
			t.Errorf("container %s (ADD returned) is not in the dataplane's view with its address: its policy and anti-spoofing entries would be removed by the next sync", cid)
		}
	}
}

// TestPutWrittenNeverOverNewer: a write the watch has already delivered,
// or overtaken (a later put or delete), is not put back.
func TestPutWrittenNeverOverNewer(t *testing.T) {
	c := newCache(datastore.NewClient(memstore.New()), []string{"WorkloadEndpoint"}, slog.New(slog.DiscardHandler))
	w := wep("a", "10.0.0.1/32")
	c.saw("WorkloadEndpoint", 10) // e.g. the watch delivered a delete of a at 10
	c.putWritten("WorkloadEndpoint", w, 7)
	if _, ok := c.get("WorkloadEndpoint", w.Namespace, w.Name); ok {
		t.Fatal("a write at 7 was put back after the watch delivered revision 10")
	}
	c.putWritten("WorkloadEndpoint", w, 11)
	if _, ok := c.get("WorkloadEndpoint", w.Namespace, w.Name); !ok {
		t.Fatal("a write at 11, newer than anything the watch delivered, is not in the cache")
	}
}
