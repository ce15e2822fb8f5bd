package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/netns"
)

// TestPrivilegedQuarantinedPolicyDoesNotStopPolicy writes, straight to the
// datastore (as a store written before validation refused it would hold),
// a GlobalNetworkPolicy with doNotTrack selecting one container. The agent
// must quarantine it: that container's ingress is denied, while ADDs keep
// succeeding, a policy written afterwards is enforced, a deleted endpoint
// leaves the kernel's sets, and the quarantine shows in the metric and in
// the Node status. Deleting the policy ends the quarantine.
func TestPrivilegedQuarantinedPolicyDoesNotStopPolicy(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.81.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	a, b := h.Attach("net1"), h.Attach("net1")
	listenIn(t, a.NSPath, a.IP())
	listenIn(t, b.NSPath, b.IP())
	mustReach(t, a, b, true)
	labelEndpoint(t, c, b, map[string]string{"role": "target"})

	// The bad policy, bypassing validation.
	bad := &api.GlobalNetworkPolicy{
		TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "GlobalNetworkPolicy"},
		ObjectMeta: api.ObjectMeta{Name: "untracked"},
		Spec: api.GlobalNetworkPolicySpec{Selector: "role == 'target'", DoNotTrack: true, ApplyOnForward: true,
			Ingress: []api.Rule{{Action: "Allow"}}},
	}
	if err := api.Validate(bad); err == nil {
		t.Fatal("validation accepts doNotTrack: true; this test wants a policy only a raw write can store")
	}
	raw, err := json.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key := datastore.ResourceKey(bad.KindInfo(), "", bad.Name)
	if _, err := c.Store.Create(ctx, key, raw); err != nil {
		t.Fatal(err)
	}

	// Fail closed for what it selects, in its direction only.
	mustReach(t, a, b, false)
	mustReach(t, b, a, true)
	waitFor(t, "the quarantine metric", func() error {
		m, err := agentMetrics(h)
		if err != nil {
			return err
		}
		if !strings.Contains(m, `tabby_agent_policy_quarantined{policy="GlobalNetworkPolicy/untracked"} 1`) {
			return errors.New("metric tabby_agent_policy_quarantined{policy=\"GlobalNetworkPolicy/untracked\"} not reported")
		}
		return nil
	})
	waitFor(t, "the Node status", func() error {
		r, err := c.Client.Get(ctx, "Node", "", "node1")
		if err != nil {
			return err
		}
		qs := r.(*api.Node).Status.QuarantinedPolicies
		if len(qs) != 1 || qs[0].Name != "untracked" || !strings.Contains(qs[0].Reason, "spec.doNotTrack") {
			return fmt.Errorf("status.quarantinedPolicies = %+v", qs)
		}
		return nil
	})

	// ADDs keep succeeding (Attach fails the test otherwise), and a
	// policy written afterwards is enforced: c may not send to a.
	d := h.Attach("net1")
	mustReach(t, d, a, true)
	labelEndpoint(t, c, d, map[string]string{"role": "isolated"})
	c.Apply(&api.GlobalNetworkPolicy{
		ObjectMeta: api.ObjectMeta{Name: "later"},
		Spec: api.GlobalNetworkPolicySpec{Selector: "role == 'isolated'", Types: []string{"Egress"},
			Egress: []api.Rule{{Action: "Deny"}}},
	})
	mustReach(t, d, a, false)

	// A deleted endpoint leaves the kernel's sets.
	if err := d.Detach(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	waitFor(t, "the deleted endpoint's address to leave the table", func() error {
		out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "list", "table", "inet", "tabby").CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft list: %v: %s", err, out)
		}
		if strings.Contains(string(out), d.IP().String()) {
			return fmt.Errorf("%s is still in table inet tabby", d.IP())
		}
		return nil
	})

	// Fixing the policy (here: deleting it) ends the quarantine.
	if _, err := c.Client.Delete(ctx, "GlobalNetworkPolicy", "", "untracked", ""); err != nil {
		t.Fatal(err)
	}
	mustReach(t, a, b, true)
	waitFor(t, "the Node status to clear", func() error {
		r, err := c.Client.Get(ctx, "Node", "", "node1")
		if err != nil {
			return err
		}
		if qs := r.(*api.Node).Status.QuarantinedPolicies; len(qs) != 0 {
			return fmt.Errorf("status.quarantinedPolicies = %+v", qs)
		}
		return nil
	})
}

// waitFor polls f until it succeeds or a generous deadline passes.
func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustReach waits until from can (or cannot) open a TCP connection to to.
func mustReach(t *testing.T, from, to *agenttest.Container, want bool) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s → %s reachable=%v", from.IP(), to.IP(), want), func() error {
		err := dialQuick(from.NSPath, to.IP())
		switch {
		case want && err != nil:
			return err
		case !want && err == nil:
			return errors.New("connected")
		}
		return nil
	})
}

// dialQuick is dialFrom with a short timeout (a denied SYN costs it).
func dialQuick(nsPath string, to netip.Addr) error {
	return netns.Do(nsPath, func() error {
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(to, 8080).String(), 500*time.Millisecond)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// labelEndpoint sets labels on a container's WorkloadEndpoint, as an
// orchestrator would.
func labelEndpoint(t *testing.T, c *agenttest.Cluster, ct *agenttest.Container, labels map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for attempt := 0; attempt < 5; attempt++ {
		list, _, err := c.Client.List(ctx, "WorkloadEndpoint", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			w := r.(*api.WorkloadEndpoint)
			if w.Spec.ContainerID != ct.ID {
				continue
			}
			w.Labels = labels
			if _, err = c.Client.Update(ctx, w); err == nil {
				return
			}
		}
	}
	t.Fatalf("could not label the endpoint of %s", ct.ID)
}

// agentMetrics reads the agent's /metrics from inside its host namespace.
func agentMetrics(h *agenttest.Host) (string, error) {
	var body string
	err := netns.Do(h.NSPath, func() error {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:9099", 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(bufio.NewReader(conn))
		body = string(b)
		return err
	})
	return body, err
}
