package ctl

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/flows"
)

// TestFlowsCommand: `tabby flows` finds the agents from the Node
// resources, merges their records oldest first and prints them as a
// table, a wide table or JSON lines; a node whose agent does not answer
// is a warning; no agent answering is an error.
func TestFlowsCommand(t *testing.T) {
	ring := flows.NewRing(10)
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	ring.Add(
		flows.FlowRecord{Start: t0.Add(2 * time.Second), End: t0.Add(3 * time.Second), Node: "n1", Proto: "tcp", SrcIP: "10.65.0.9", DstIP: "10.65.0.3", DstPort: 81,
			Direction: flows.Ingress, Action: flows.Deny, Dst: &flows.Endpoint{Namespace: "shop", Name: "db", Kind: flows.KindWorkload},
			Policy: flows.PolicyRef{Tier: "default", Kind: "NetworkPolicy", Namespace: "shop", Name: "db", Rule: 1}, Packets: 2, Bytes: 120,
			PendingAction: flows.Allow, PendingPolicy: &flows.PolicyRef{Tier: "default", Kind: "StagedNetworkPolicy", Namespace: "shop", Name: "db", Rule: 0}},
		flows.FlowRecord{Start: t0, End: t0.Add(time.Second), Node: "n1", Proto: "tcp", SrcIP: "10.65.0.2", DstIP: "10.65.0.3", DstPort: 80,
			Direction: flows.Ingress, Action: flows.Allow, Src: &flows.Endpoint{Namespace: "shop", Name: "web"}, Dst: &flows.Endpoint{Namespace: "shop", Name: "db"},
			Policy: flows.PolicyRef{Tier: "default", Kind: "NetworkPolicy", Namespace: "shop", Name: "db", Rule: 0}},
	)
	srv := httptest.NewServer(flows.Handler(ring))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	c := newCLI(t)
	c.stdin = `apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv4Address: 127.0.0.1/8}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n2}
spec: {bgp: {ipv4Address: 127.0.0.2/8}}
`
	c.ok("apply", "-f", "-")

	code, out, errs := c.run("flows", "--agent-port", port)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "START") ||
		!strings.Contains(lines[1], "shop/web") || !strings.Contains(lines[1], "default|NetworkPolicy|shop/db|0") ||
		!strings.Contains(lines[2], "10.65.0.9") || !strings.Contains(lines[2], "shop/db:81") || !strings.Contains(lines[2], "(pending: allow)") {
		t.Errorf("table, oldest first:\n%s", out)
	}
	if !strings.Contains(errs, "node n2") {
		t.Errorf("no warning about n2, whose agent does not answer: %q", errs)
	}

	_, out, _ = c.run("flows", "--agent-port", port, "-o", "wide", "--action", "deny")
	if !strings.Contains(out, "default|StagedNetworkPolicy|shop/db|0") || strings.Contains(out, "shop/web") || !strings.Contains(out, "120") {
		t.Errorf("-o wide --action deny:\n%s", out)
	}
	_, out, _ = c.run("flows", "--agent-port", port, "-o", "json", "--policy", "shop/db", "--since", t0.Add(time.Second+500*time.Millisecond).Format(time.RFC3339Nano))
	if n := strings.Count(out, "\n"); n != 1 || !strings.Contains(out, `"dstPort":81`) {
		t.Errorf("-o json --since: got %d lines:\n%s", n, out)
	}

	srv.Close()
	if code, _, errs := c.run("flows", "--agent-port", port); code == 0 || !strings.Contains(errs, "node n1") {
		t.Errorf("no agent answering: exit %d, %q; want an error naming the nodes", code, errs)
	}
}
