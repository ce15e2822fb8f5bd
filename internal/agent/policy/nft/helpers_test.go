package nft

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
}

func randSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testNS is a private network namespace, removed at the end of the test.
type testNS struct {
	name, path string
	fd         *os.File
}

func newNS(t testing.TB, prefix string) *testNS {
	t.Helper()
	name := prefix + randSuffix(t)
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	f, err := netns.Open(path)
	if err != nil {
		netns.Delete(name)
		t.Fatalf("open netns %s: %v", path, err)
	}
	t.Cleanup(func() {
		f.Close()
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return &testNS{name: name, path: path, fd: f}
}

// driver returns a driver programming ns.
func (ns *testNS) driver() *Driver {
	return New(nil, WithNetNS(int(ns.fd.Fd())))
}

// nft runs the nft CLI in the namespace (for tampering and debugging);
// the test fails when nft is not installed.
func (ns *testNS) nft(t testing.TB, args ...string) string {
	t.Helper()
	testenv.NeedTool(t, "nft")
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.name, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func mustApply(t testing.TB, d *Driver, rs *policy.Ruleset) Change {
	t.Helper()
	if err := d.Apply(context.Background(), rs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return d.LastChange()
}

func mustDump(t testing.TB, d *Driver) string {
	t.Helper()
	s, err := d.Dump(context.Background())
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return s
}

// form runs the package's tests on a flat-cost form of every compiled
// ruleset: "split" (policy.SplitFamilies), "split+merge" (then
// policy.MergeRules), "share" (policy.ShareEndpointChains) or
// "split+share", or "flat" (policy.Flatten, what the agent programs):
// go test ./internal/agent/policy/nft -args -form=split.
var form = flag.String("form", "", `test a flat-cost form of every compiled ruleset: "split", "split+merge", "share", "split+share" or "flat"`)

func mustCompile(t testing.TB, s *policy.State) *policy.Ruleset {
	t.Helper()
	rs, err := policy.Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	switch *form {
	case "":
	case "split":
		rs = policy.SplitFamilies(rs)
	case "split+merge":
		rs = policy.MergeRules(policy.SplitFamilies(rs))
	case "share":
		rs = policy.ShareEndpointChains(rs)
	case "split+share":
		rs = policy.ShareEndpointChains(policy.SplitFamilies(rs))
	case "flat":
		rs = policy.Flatten(rs)
	default:
		t.Fatalf("-form: %q is not split, split+merge, share, split+share or flat", *form)
	}
	return rs
}
