package ctl

import (
	"strings"
	"testing"
)

func TestGetCustomColumnsAndTemplates(t *testing.T) {
	c := newCLI(t)
	c.stdin = "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: pool-a, labels: {zone: a}}\nspec: {cidr: 10.60.0.0/16, natOutgoing: true}\n---\n" +
		"apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: pool-b}\nspec: {cidr: 10.61.0.0/16, blockSize: 28}\n---\n" +
		"apiVersion: tabby.dev/v1\nkind: WorkloadEndpoint\nmetadata: {name: node--a-cni-web-eth0}\nspec: {node: node-a, orchestrator: cni, workload: web, endpoint: eth0, ipNetworks: [10.60.0.5/32, 'fd00::5/128']}\n"
	c.ok("apply", "-f", "-")
	norm := func(s string) string {
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
		return strings.Join(lines, "\n")
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"custom columns", []string{"get", "ippools", "-o", "custom-columns=NAME:.metadata.name,CIDR:.spec.cidr,BLOCK:.spec.blockSize,NAT:spec.natOutgoing,ZONE:.metadata.labels.zone"},
			"NAME CIDR BLOCK NAT ZONE\npool-a 10.60.0.0/16 26 true a\npool-b 10.61.0.0/16 28 <none> <none>"},
		{"index and every item", []string{"get", "wep", "-o", "custom-columns=FIRST:.spec.ipNetworks[0],ALL:.spec.ipNetworks[*]"},
			"FIRST ALL\n10.60.0.5/32 10.60.0.5/32,fd00::5/128"},
		{"go-template over a listing", []string{"get", "ippools", "-o", "go-template={{range .items}}{{.metadata.name}}={{.spec.cidr}};{{end}}"},
			"pool-a=10.60.0.0/16;pool-b=10.61.0.0/16;"},
		{"go-template of one resource", []string{"get", "ippool", "pool-b", "-o", "go-template", "--template", "{{.kind}} {{.spec.blockSize}}"},
			"IPPool 28"},
		{"json func", []string{"get", "ippool", "pool-a", "-o", "go-template={{json .metadata.labels}}"},
			`{"zone":"a"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			if got := norm(c.ok(tc.args...)); got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	c.t = t
	for _, tc := range []struct{ o, want string }{
		{"custom-columns=NAME", "want TITLE:.field.path"},
		{"custom-columns=X:.spec.a[x]", "[x] is not an index"},
		{"go-template={{.metadata.name", "go-template"},
		{"go-template", "the template is empty"},
	} {
		if errs := c.fail("get", "ippools", "-o", tc.o); !strings.Contains(errs, tc.want) {
			t.Errorf("-o %s: %q, want it to mention %q", tc.o, errs, tc.want)
		}
	}
}
