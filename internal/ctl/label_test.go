package ctl

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// oneOfEachKind is a minimal valid resource of every kind, by kind.
var oneOfEachKind = map[string]string{
	"Node":                "kind: Node\nmetadata: {name: node-a}\nspec: {bgp: {ipv4Address: 10.200.0.1/24}}\n",
	"IPPool":              "kind: IPPool\nmetadata: {name: pool-a}\nspec: {cidr: 10.64.0.0/16}\n",
	"IPAMConfig":          "kind: IPAMConfig\nmetadata: {name: default}\nspec: {strictAffinity: false}\n",
	"BGPConfiguration":    "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 64512}\n",
	"BGPPeer":             "kind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 10.200.0.254, asNumber: 64600}\n",
	"FelixConfiguration":  "kind: FelixConfiguration\nmetadata: {name: default}\nspec: {}\n",
	"Profile":             "kind: Profile\nmetadata: {name: net1}\nspec: {}\n",
	"GlobalNetworkSet":    "kind: GlobalNetworkSet\nmetadata: {name: gns}\nspec: {nets: [10.9.0.0/16]}\n",
	"NetworkSet":          "kind: NetworkSet\nmetadata: {name: ns1, namespace: prod}\nspec: {nets: [10.8.0.0/16]}\n",
	"GlobalNetworkPolicy": "kind: GlobalNetworkPolicy\nmetadata: {name: gnp}\nspec: {selector: all()}\n",
	"NetworkPolicy":       "kind: NetworkPolicy\nmetadata: {name: np, namespace: prod}\nspec: {selector: all()}\n",
	"HostEndpoint":        "kind: HostEndpoint\nmetadata: {name: hep}\nspec: {node: node-a, interfaceName: eth0}\n",
	"WorkloadEndpoint":    "kind: WorkloadEndpoint\nmetadata: {name: node--a-cni-web-eth0, namespace: prod}\nspec: {node: node-a, orchestrator: cni, workload: web, endpoint: eth0, ipNetworks: [10.64.0.5/32]}\n",
}

func namespaceOf(body string) []string {
	if strings.Contains(body, "namespace: prod") {
		return []string{"-n", "prod"}
	}
	return nil
}

func nameOf(body string) string {
	_, rest, _ := strings.Cut(body, "name: ")
	name, _, _ := strings.Cut(rest, ",")
	name, _, _ = strings.Cut(name, "}")
	return name
}

// TestLabelEveryKind sets, refuses, overwrites and removes a label on a
// resource of every kind, workload endpoints included.
func TestLabelEveryKind(t *testing.T) {
	c := newCLI(t)
	for kind, body := range oneOfEachKind {
		t.Run(kind, func(t *testing.T) {
			c.t = t
			c.stdin = "apiVersion: tabby.dev/v1\n" + body
			c.ok("create", "-f", "-")
			name, ns := nameOf(body), namespaceOf(body)
			label := func(args ...string) []string { return append(append([]string{"label", kind, name}, args...), ns...) }
			get := func() string { return c.ok(append([]string{"get", kind, name, "-o", "yaml"}, ns...)...) }

			if out := c.ok(label("tier=gold")...); !strings.Contains(out, "Successfully set label tier=gold") {
				t.Fatalf("label output %q", out)
			}
			if y := get(); !strings.Contains(y, "tier: gold") {
				t.Fatalf("label not stored:\n%s", y)
			}
			before := get()
			if errs := c.fail(label("tier=silver")...); !strings.Contains(errs, `metadata.labels["tier"]: already set to "gold"`) || !strings.Contains(errs, "--overwrite") {
				t.Fatalf("changing a label without --overwrite: %q", errs)
			}
			if errs := c.fail(label("tier=bad value")...); !strings.Contains(errs, "metadata.labels") || !strings.Contains(errs, `"bad value"`) {
				t.Fatalf("invalid label value: %q", errs)
			}
			c.ok(label("tier=silver", "--overwrite", "--dry-run")...)
			if got := get(); got != before {
				t.Fatalf("a refused or dry-run label changed the resource:\n%s\nwant\n%s", got, before)
			}
			c.ok(label("tier=silver", "--overwrite")...)
			if y := get(); !strings.Contains(y, "tier: silver") {
				t.Fatalf("--overwrite not stored:\n%s", y)
			}
			c.ok(label("tier", "--remove")...)
			if y := get(); strings.Contains(y, "tier:") {
				t.Fatalf("--remove left the label:\n%s", y)
			}
			if errs := c.fail(label("tier", "--remove")...); !strings.Contains(errs, `"tier" is not set`) {
				t.Fatalf("removing a missing label: %q", errs)
			}
		})
	}
	c.t = t
	if errs := c.fail("label", "ippool", "nosuch", "a=b"); !strings.Contains(errs, "not found") {
		t.Fatalf("label of a missing resource: %q", errs)
	}
	if code, _, errs := c.run("label", "ippool", "pool-a", "novalue"); code != 2 || !strings.Contains(errs, "KEY=VALUE") {
		t.Fatalf("label without a value: exit %d %q", code, errs)
	}
}

// TestLabelConcurrentNoLostUpdate runs label commands in parallel on one
// resource: compare-and-swap with re-read keeps every label.
func TestLabelConcurrentNoLostUpdate(t *testing.T) {
	c := newCLI(t)
	c.stdin = "apiVersion: tabby.dev/v1\n" + oneOfEachKind["GlobalNetworkSet"]
	c.ok("create", "-f", "-")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, e := (&cli{t: t, ds: c.ds}).run("label", "gns", "gns", fmt.Sprintf("k%d=v", i))
			if code != 0 {
				errs[i] = out + e
			}
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Fatalf("label k%d: %s", i, e)
		}
	}
	y := c.ok("get", "gns", "gns", "-o", "yaml")
	for i := range n {
		if !strings.Contains(y, fmt.Sprintf("k%d: v", i)) {
			t.Fatalf("label k%d was lost:\n%s", i, y)
		}
	}
}

func TestPatch(t *testing.T) {
	c := newCLI(t)
	c.stdin = "apiVersion: tabby.dev/v1\n" + oneOfEachKind["IPPool"]
	c.ok("create", "-f", "-")
	get := func() string { return c.ok("get", "ippool", "pool-a", "-o", "yaml") }

	c.ok("patch", "ippool", "pool-a", "-p", `{"spec":{"natOutgoing":true}}`)
	if y := get(); !strings.Contains(y, "natOutgoing: true") || !strings.Contains(y, "cidr: 10.64.0.0/16") {
		t.Fatalf("JSON patch:\n%s", y)
	}
	c.ok("patch", "ippool", "pool-a", "--type", "strategic", "-p", "spec:\n  nodeSelector: rack == 'a'\nmetadata:\n  labels: {zone: a}\n")
	if y := get(); !strings.Contains(y, "nodeSelector: rack == 'a'") || !strings.Contains(y, "zone: a") || !strings.Contains(y, "natOutgoing: true") {
		t.Fatalf("YAML patch:\n%s", y)
	}
	c.ok("patch", "ippool", "pool-a", "-p", `{"spec":{"nodeSelector":null}}`)
	if y := get(); strings.Contains(y, "rack") {
		t.Fatalf("null did not remove the field:\n%s", y)
	}

	before := get()
	bad := []struct{ name, patch, want string }{
		{"unknown field", `{"spec":{"natOutgong":true}}`, "natOutgong"},
		{"bad value", `{"spec":{"ipipMode":"Sometimes"}}`, "spec.ipipMode"},
		{"immutable", `{"spec":{"cidr":"10.65.0.0/16"}}`, "spec.cidr"},
		{"rename", `{"metadata":{"name":"other"}}`, "metadata.name"},
		{"wrong type", `{"spec":{"natOutgoing":"yes"}}`, "spec.natOutgoing"},
		{"stale resourceVersion", `{"metadata":{"resourceVersion":"1"},"spec":{"disabled":true}}`, "conflict"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			if errs := c.fail("patch", "ippool", "pool-a", "-p", tc.patch); !strings.Contains(errs, tc.want) {
				t.Fatalf("error %q does not mention %q", errs, tc.want)
			}
		})
	}
	c.t = t
	c.ok("patch", "ippool", "pool-a", "--dry-run", "-p", `{"spec":{"disabled":true}}`)
	if got := get(); got != before {
		t.Fatalf("a refused or dry-run patch changed the pool:\n%s\nwant\n%s", got, before)
	}
	if code, _, errs := c.run("patch", "ippool", "pool-a", "-p", "[1,2]"); code != 2 || !strings.Contains(errs, "object") {
		t.Fatalf("non-object patch: exit %d %q", code, errs)
	}
	if code, _, errs := c.run("patch", "ippool", "pool-a", "--type", "json", "-p", "{}"); code != 2 || !strings.Contains(errs, `"json"`) {
		t.Fatalf("--type json: exit %d %q", code, errs)
	}
}

// TestDryRunWritesNothing: --dry-run checks against the datastore, reports
// what would change and writes nothing.
func TestDryRunWritesNothing(t *testing.T) {
	c := newCLI(t)
	f := writeFile(t, "m.yaml", poolYAML)
	for _, verb := range []string{"apply", "create"} {
		if out := c.ok(verb, "--dry-run", "-f", f); !strings.Contains(out, "would create 2") || !strings.Contains(out, "nothing was written") {
			t.Fatalf("%s --dry-run: %q", verb, out)
		}
		if out := c.ok("get", "ippools"); strings.Contains(out, "pool-a") {
			t.Fatalf("%s --dry-run wrote the pool", verb)
		}
	}
	if errs := c.fail("replace", "--dry-run", "-f", f); !strings.Contains(errs, "not found") {
		t.Fatalf("replace --dry-run of missing resources: %q", errs)
	}
	c.ok("create", "-f", f)
	if errs := c.fail("create", "--dry-run", "-f", f); !strings.Contains(errs, "already exists") {
		t.Fatalf("create --dry-run of existing resources: %q", errs)
	}
	if out := c.ok("replace", "--dry-run", "-f", f); !strings.Contains(out, "would replace 2") {
		t.Fatalf("replace --dry-run: %q", out)
	}
	changed := writeFile(t, "c.yaml", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: pool-a}\nspec: {cidr: 10.61.0.0/16}\n")
	if errs := c.fail("apply", "--dry-run", "-f", changed); !strings.Contains(errs, "spec.cidr") {
		t.Fatalf("apply --dry-run changing an immutable field: %q", errs)
	}
}

// TestCreateFailsBeforeFirstWrite: a create whose second document exists
// already writes nothing (it used to write the first and report partial
// success).
func TestCreateFailsBeforeFirstWrite(t *testing.T) {
	c := newCLI(t)
	c.stdin = "apiVersion: tabby.dev/v1\n" + oneOfEachKind["Profile"]
	c.ok("create", "-f", "-")
	c.stdin = "apiVersion: tabby.dev/v1\n" + oneOfEachKind["GlobalNetworkSet"] + "---\napiVersion: tabby.dev/v1\n" + oneOfEachKind["Profile"]
	if errs := c.fail("create", "-f", "-"); !strings.Contains(errs, `Profile "net1"`) || !strings.Contains(errs, "already exists") {
		t.Fatalf("create: %q", errs)
	}
	if out := c.ok("get", "globalnetworksets"); strings.Contains(out, "gns") {
		t.Fatal("the first document was written although the second one exists")
	}
}

// TestValidateOffline checks files without any datastore.
func TestValidateOffline(t *testing.T) {
	c := &cli{t: t, ds: "http://127.0.0.1:1"}
	if out := c.ok("validate", "-f", writeFile(t, "m.yaml", poolYAML)); !strings.Contains(out, "Valid: 2 resource(s)") {
		t.Fatalf("validate: %q", out)
	}
	bad := writeFile(t, "b.yaml", poolYAML+"---\napiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.60.1.0/24, ipipMode: Sometimes}\n")
	if errs := c.fail("validate", "-f", bad); !strings.Contains(errs, "document 3") || !strings.Contains(errs, "spec.ipipMode") {
		t.Fatalf("validate of a bad file: %q", errs)
	}
	overlap := writeFile(t, "o.yaml", poolYAML+"---\napiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.60.1.0/24}\n")
	if errs := c.fail("validate", "-f", overlap); !strings.Contains(errs, "overlaps") {
		t.Fatalf("validate of overlapping pools: %q", errs)
	}
}

// TestPreflightManyDocuments: with many documents of a kind the
// preflight lists the kind once; creating them still refuses one that
// exists before writing any.
func TestPreflightManyDocuments(t *testing.T) {
	c := newCLI(t)
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, "---\napiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: set-%d}\nspec: {nets: [10.9.%d.0/24]}\n", i, i)
	}
	c.stdin = "apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: set-19}\nspec: {nets: [10.9.19.0/24]}\n"
	c.ok("create", "-f", "-")
	c.stdin = b.String()
	if errs := c.fail("create", "-f", "-"); !strings.Contains(errs, `GlobalNetworkSet "set-19"`) || !strings.Contains(errs, "already exists") {
		t.Fatalf("create: %q", errs)
	}
	if out := c.ok("get", "gns"); strings.Contains(out, "set-0") {
		t.Fatal("documents before the existing one were written")
	}
	c.stdin = b.String()
	if out := c.ok("apply", "-f", "-"); !strings.Contains(out, "Successfully applied 20") {
		t.Fatalf("apply: %q", out)
	}
}
