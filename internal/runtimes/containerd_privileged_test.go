package runtimes_test

import (
	"errors"
	"fmt"
	"github.com/tabbynet/tabby/internal/api"
	"net/netip"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/testenv"
)

// TestPrivilegedContainerd runs `ctr run --cni` (docs/runtimes.md) against
// one agent: the task gets a pool address and reaches another task, and
// the kill/rm paths (which send no CNI DEL) leave nothing once the agent's
// reaper has seen the namespace go.
func TestPrivilegedContainerd(t *testing.T) {
	testenv.Privileged(t)
	c := agenttest.NewCluster(t, "10.80.0.0/16")
	h := c.StartHost("node1", "10.202.0.1/24")
	d := NewContainerd(t, c, h, "tabby")

	d.Run("run", "-d", "--cni", "--snapshotter", "native", containerdImage, "web", "sh", "-c", webCmd)
	ip := d.IP("web")
	if a, err := netip.ParseAddr(ip); err != nil || !netip.MustParsePrefix("10.80.0.0/16").Contains(a) {
		t.Fatalf("web's address %q: want one in the pool 10.80.0.0/16", ip)
	}
	out, err := d.Try("run", "--rm", "--cni", "--snapshotter", "native", containerdImage, "client", "sh", "-c", httpGet(ip, "80"))
	if err != nil || !strings.Contains(out, "hello-from-web") {
		t.Fatalf("client → web: got %q (%v), want hello-from-web", out, err)
	}
	eventually(t, "only web is left after the client exits", func() error { return stateIs(t, c, h, 1) })
	if w := stateOf(t, c, h).Endpoints[0]; w.Spec.Workload != "default-web" {
		t.Fatalf("web's endpoint %q has workload %q; want ctr's container ID default-web", w.Name, w.Spec.Workload)
	}

	// A policy that selects web and allows nothing in blocks the client.
	c.Apply(&api.GlobalNetworkPolicy{ObjectMeta: api.ObjectMeta{Name: "deny-web"},
		Spec: api.GlobalNetworkPolicySpec{Selector: "projectcalico.org/orchestrator == 'cni'", Types: []string{"Ingress"}}})
	eventually(t, "deny policy blocks client → web", func() error {
		out, err := d.Try("run", "--rm", "--cni", "--snapshotter", "native", containerdImage, "client-"+agenttest.RandName(""), "sh", "-c", httpGet(ip, "80"))
		if err == nil && strings.Contains(out, "hello-from-web") {
			return errors.New("client still reaches web")
		}
		return nil
	})
	deletePolicy(t, c, "deny-web")
	eventually(t, "only web is left after the blocked clients exit", func() error { return stateIs(t, c, h, 1) })

	d.Run("tasks", "kill", "-s", "SIGKILL", "web")
	eventually(t, "web's task has stopped", func() error {
		_, err := d.Try("tasks", "delete", "web")
		return err
	})
	d.Run("containers", "rm", "web")
	eventually(t, "nothing is left after ctr task kill and ctr c rm", func() error { return stateIs(t, c, h, 0) })
	wantState(t, c, h, 0, "after ctr task kill and ctr c rm")
	checkDocRan(t, "ctr", &d.ran, ip)
}

// stateIs reports whether h holds n endpoints, handles and interfaces.
func stateIs(t *testing.T, c *agenttest.Cluster, h *agenttest.Host, n int) error {
	s := stateOf(t, c, h)
	if len(s.Endpoints) != n || len(s.Handles) != n || len(s.Links) != n {
		return fmt.Errorf("%d endpoints, handles %v, interfaces %v; want %d of each", len(s.Endpoints), s.Handles, s.Links, n)
	}
	return nil
}
