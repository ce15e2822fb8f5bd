package nft

import (
	"fmt"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

func TestPrivilegedScratch(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "tbyp-")
	d := ns.driver()
	rs := mustCompile(t, policytest.States()["rule-fields"])
	mustApply(t, d, rs)
	fmt.Println(ns.nft(t, "list", "table", "inet", "tabby"))
	rs = mustCompile(t, policytest.States()["port-mappings"])
	mustApply(t, d, rs)
	fmt.Println(ns.nft(t, "list", "table", "inet", "tabby"))
	rs = mustCompile(t, policytest.States()["host-endpoints"])
	mustApply(t, d, rs)
	fmt.Println(ns.nft(t, "list", "table", "inet", "tabby"))
}
