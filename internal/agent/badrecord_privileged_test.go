package agent_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/datastore"
)

// garbage is what a broken writer (or a disk error) could leave under a key.
var garbage = []byte("\x00\xffnot a resource")

// TestPrivilegedBadRecordsDoNotStall: records that cannot be decoded, in
// several kinds the agent watches, do not keep the agent from becoming
// ready (it used to relist for ever and never serve its socket); ADDs
// work, containers talk, and a record garbled while the agent runs does
// not stop it either.
func TestPrivilegedBadRecordsDoNotStall(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.84.0.0/16")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, key := range []string{
		datastore.KeyPrefix + "workloadendpoints/default/garbage-wep",
		datastore.KeyPrefix + "nodes/garbage-node",
		datastore.KeyPrefix + "networkpolicies/default/garbage-policy",
		datastore.KeyPrefix + "globalnetworkpolicies/garbage-gnp",
		datastore.KeyPrefix + "profiles/garbage-profile",
	} {
		if _, err := c.Store.Create(ctx, key, garbage); err != nil {
			t.Fatalf("write garbage under %s: %v", key, err)
		}
	}
	h := c.StartHost("node1", "10.200.0.1/24") // fails unless the agent gets ready
	a := h.Attach("net1")
	b := h.Attach("net1")
	listenIn(t, b.NSPath, b.IP())
	if err := dialFrom(a.NSPath, b.IP()); err != nil {
		t.Fatalf("container %s → %s over TCP: %v", a.IP(), b.IP(), err)
	}

	// Garble a live Profile and add one more bad endpoint while the agent
	// runs: it stays ready and the next ADD works.
	kv, err := c.Store.Get(ctx, datastore.KeyPrefix+"profiles/net1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store.Update(ctx, kv.Key, garbage, kv.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store.Create(ctx, datastore.KeyPrefix+"workloadendpoints/default/garbage-2", garbage); err != nil {
		t.Fatal(err)
	}
	d := h.Attach("net2")
	if !d.IP().IsValid() || !h.Ready() {
		t.Fatalf("after records were garbled at run time: ADD gave %v, ready %v", d.IP(), h.Ready())
	}

	// Each bad key was logged once, with its key.
	log, err := os.ReadFile(h.Log)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"workloadendpoints/default/garbage-wep", "nodes/garbage-node", "profiles/net1", "workloadendpoints/default/garbage-2"} {
		n := 0
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "cannot be decoded") && strings.Contains(line, key) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("agent log names %s in %d warnings, want 1", key, n)
		}
	}
}
