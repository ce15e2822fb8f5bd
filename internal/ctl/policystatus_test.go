package ctl

import (
	"strings"
	"testing"
)

// TestGetWideShowsQuarantine: `tabby get … -o wide` shows, per policy, the
// nodes whose agent reported it quarantined (Node status) and why.
func TestGetWideShowsQuarantine(t *testing.T) {
	c := newCLI(t)
	c.stdin = `
apiVersion: tabby.dev/v1
kind: Node
metadata: {name: h1}
spec: {}
status:
  quarantinedPolicies:
  - {kind: GlobalNetworkPolicy, name: bad, reason: "GlobalNetworkPolicy bad: spec.doNotTrack: true: untracked policy is not supported"}
  - {kind: NetworkPolicy, namespace: prod, name: bad, reason: "NetworkPolicy prod/bad: spec.tier: x"}
---
apiVersion: tabby.dev/v1
kind: Node
metadata: {name: h2}
spec: {}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: bad}
spec: {selector: all()}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: good}
spec: {selector: all()}
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: default}
spec: {selector: all()}
`
	c.ok("apply", "-f", "-")
	out := c.ok("get", "globalnetworkpolicy", "-o", "wide")
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], "STATUS") {
		t.Fatalf("no STATUS column:\n%s", out)
	}
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "bad "):
			if !strings.Contains(l, "Quarantined on 1/2 nodes (h1): GlobalNetworkPolicy bad: spec.doNotTrack") {
				t.Errorf("bad: %q", l)
			}
		case strings.HasPrefix(l, "good "):
			if !strings.HasSuffix(strings.TrimSpace(l), "ok") {
				t.Errorf("good: %q", l)
			}
		}
	}
	// The namespaced one of the same name in another namespace is not it.
	if out := c.ok("get", "networkpolicy", "-o", "wide"); !strings.Contains(out, "ok") || strings.Contains(out, "Quarantined") {
		t.Errorf("default/bad is not quarantined anywhere:\n%s", out)
	}
	if out := c.ok("get", "globalnetworkpolicy"); strings.Contains(out, "STATUS") {
		t.Errorf("STATUS without -o wide:\n%s", out)
	}
}

// TestGetTiers: tiers list with their order and default action, and
// policies with their tier.
func TestGetTiers(t *testing.T) {
	c := newCLI(t)
	c.stdin = `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.p}
spec: {tier: security, selector: all()}
`
	c.ok("apply", "-f", "-")
	if out := c.ok("get", "tiers"); !strings.Contains(out, "DEFAULTACTION") || !strings.Contains(out, "security  100    Deny") {
		t.Errorf("get tiers:\n%s", out)
	}
	if out := c.ok("get", "gnp"); !strings.Contains(out, "security.p  security  ") {
		t.Errorf("get gnp:\n%s", out)
	}
	c.stdin = `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec: {tier: security, selector: all()}
`
	if errs := c.fail("apply", "-f", "-"); !strings.Contains(errs, "metadata.name") || !strings.Contains(errs, "security.<name>") {
		t.Errorf("apply of a tiered policy without the tier prefix: %s", errs)
	}
}
