package nft

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tabbynet/tabby/internal/testenv"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// TestPrivilegedSplitFamiliesApplies: the per-family form of every
// representative state (chains named "<chain>_4"/"_6", per-family dispatch
// maps), that form with its runs merged (policy.MergeRules) and with its
// endpoint chains shared (policy.ShareEndpointChains), is
// accepted by the kernel and reads back as written; moving from
// the reference form to it and back ends where a fresh apply does.
func TestPrivilegedSplitFamiliesApplies(t *testing.T) {
	requireRoot(t)
	for _, name := range StateNames() {
		t.Run(name, func(t *testing.T) {
			ns := newNS(t, "tbysf-")
			d := ns.driver()
			ref := mustCompile(t, States()[name])
			split := policy.SplitFamilies(ref)
			mustApply(t, d, split)
			d.valid = false
			if ch := mustApply(t, d, split); ch.Committed || !ch.Resynced {
				t.Errorf("Apply after reading the kernel back: %+v, want no commit", ch)
			}
			flat := policy.MergeRules(split)
			mustApply(t, d, flat)
			d.valid = false
			if ch := mustApply(t, d, flat); ch.Committed || !ch.Resynced {
				t.Errorf("merged form: Apply after reading the kernel back: %+v, want no commit", ch)
			}
			shared := policy.ShareEndpointChains(split)
			mustApply(t, d, shared)
			d.valid = false
			if ch := mustApply(t, d, shared); ch.Committed || !ch.Resynced {
				t.Errorf("shared form: Apply after reading the kernel back: %+v, want no commit", ch)
			}
			mustApply(t, d, ref)
			d.valid = false
			if ch := mustApply(t, d, ref); ch.Committed {
				t.Errorf("back to the reference form: re-reading the kernel led to %+v", ch)
			}
		})
	}
}

// TestPrivilegedListingReadsBack: for every representative state, in the
// reference and the flat form (what the agent programs), what `nft list
// table inet tabby` prints is a file `nft -f` reads back — an operator's
// backup and restore, and the scale benchmark's resync baseline. Chain
// names with ':' (the first per-family names) made it fail with a syntax
// error.
func TestPrivilegedListingReadsBack(t *testing.T) {
	requireRoot(t)
	testenv.NeedTools(t, "ip", "nft")
	for _, name := range StateNames() {
		for _, form := range []string{"reference", "flat"} {
			t.Run(name+"/"+form, func(t *testing.T) {
				ns := newNS(t, "tbylr-")
				d := ns.driver()
				rs, err := policy.Compile(States()[name])
				if err != nil {
					t.Fatal(err)
				}
				if form == "flat" {
					rs = policy.Flatten(rs)
				}
				mustApply(t, d, rs)
				out, err := exec.Command("ip", "netns", "exec", ns.name, "nft", "list", "table", "inet", policy.TableName).CombinedOutput()
				if err != nil {
					t.Fatalf("nft list: %v\n%s", err, out)
				}
				f := filepath.Join(t.TempDir(), "tabby.nft")
				if err := os.WriteFile(f, append([]byte("delete table inet "+policy.TableName+"\n"), out...), 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command("ip", "netns", "exec", ns.name, "nft", "-f", f).CombinedOutput(); err != nil {
					t.Fatalf("nft -f of its own listing: %v\n%s", err, out)
				}
			})
		}
	}
}
