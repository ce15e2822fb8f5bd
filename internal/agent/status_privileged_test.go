package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/api"
)

// statusCode runs CNI STATUS through libcni and the plugin and returns
// the CNI error code (0: success) and message.
func statusCode(t *testing.T, c *agenttest.Cluster, h *agenttest.Host) (uint, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.CNI().GetStatusNetworkList(ctx, h.ConfList("net1", "1.1.0"))
	if err == nil {
		return 0, ""
	}
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("STATUS: %v; want a CNI error", err)
	}
	return te.Code, te.Msg
}

// waitStatus polls STATUS until it gives code (generous deadline; no
// timing is asserted).
func waitStatus(t *testing.T, c *agenttest.Cluster, h *agenttest.Host, code uint, what string) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, msg := statusCode(t, c, h)
		if got == code {
			return msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: STATUS gives code %d (%s); want %d", what, got, msg, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPrivilegedStatusNotAvailable: STATUS (CNI 1.1) succeeds only while
// the agent can serve an ADD. With the only pool full, or the datastore
// stopped, it fails with code 50, and it recovers with the cause.
func TestPrivilegedStatusNotAvailable(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "")
	c.Apply(&api.IPPool{ObjectMeta: api.ObjectMeta{Name: "tiny"}, Spec: api.IPPoolSpec{CIDR: "10.78.0.0/30", BlockSize: 30}})
	h := c.StartHost("node1", "10.201.0.1/24")
	if code, msg := statusCode(t, c, h); code != 0 {
		t.Fatalf("STATUS with a free pool: code %d (%s); want success", code, msg)
	}

	// Full pool: four addresses, four containers.
	var cs []*agenttest.Container
	for range 4 {
		cs = append(cs, h.Attach("net1"))
	}
	code, msg := statusCode(t, c, h)
	if code != types.ErrPluginNotAvailable || !strings.Contains(msg, "exhausted") {
		t.Fatalf("STATUS with the pool full: code %d (%q); want 50 saying the pool is exhausted", code, msg)
	}
	if err := cs[0].Detach(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if code, msg := statusCode(t, c, h); code != 0 {
		t.Fatalf("STATUS after a DEL freed an address: code %d (%s); want success", code, msg)
	}

	// Datastore stopped: code 50 within the plugin's STATUS timeout.
	if err := c.Etcd.Stop(); err != nil {
		t.Fatalf("stop etcd: %v", err)
	}
	msg = waitStatus(t, c, h, types.ErrPluginNotAvailable, "datastore stopped")
	if !strings.Contains(msg, "datastore") {
		t.Errorf("STATUS with the datastore stopped says %q; want it to name the datastore", msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Etcd.Start(ctx); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	waitStatus(t, c, h, 0, "datastore back")
}
