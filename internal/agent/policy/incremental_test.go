package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/policy"
	. "github.com/tabbynet/tabby/internal/agent/policy/policytest"
)

// renderTable is a ruleset's table as text, without the compiler's
// warnings (the incremental path leaves those to the next full compile).
func renderTable(rs *policy.Ruleset) string {
	c := *rs
	c.Warnings = nil
	return c.Render()
}

// TestEngineReplaysRandomChanges: random sequences of remote endpoint and
// network set changes (adds, deletes, relabels, readdresses onto another
// endpoint's address, named ports, network sets containing endpoint
// addresses) and policy changes (half of them selecting remote endpoints
// only, some that do not compile), with a full change (local endpoint,
// tier, pool...) now and then, on random states with dense policies (so
// Flatten makes unions). A change the engine refuses is compiled in full,
// as the agent does. After every change the engine's ruleset is the
// ruleset a full compile of the same state gives, in both forms.
func TestEngineReplaysRandomChanges(t *testing.T) {
	incremental, full, inert, refused, localTaken, localRefused := 0, 0, 0, 0, 0, 0
	for seed := uint64(1); seed <= 25; seed++ {
		for _, flat := range []bool{true, false} {
			g := NewRandom(seed)
			s := g.State()
			r := rand.New(rand.NewPCG(seed, 23))
			for i := range 3 {
				s.Policies = append(s.Policies, densePolicy(r, fmt.Sprintf("dense-%d-%d", seed, i)))
			}
			eng := policy.NewEngine(flat)
			if _, err := eng.Full(s); err != nil {
				t.Fatal(err)
			}
			for step := 0; step < 40; step++ {
				var got *policy.Ruleset
				var what string
				switch r.IntN(8) {
				case 0:
					what = g.Mutate(s) + " (full)"
					var err error
					if got, err = eng.Full(s); err != nil {
						t.Fatal(err)
					}
					full++
				case 1, 2:
					var chs []policy.Change
					chs, what = g.PolicyChange(s)
					var ok bool
					if got, ok = eng.Update(chs); ok {
						inert++
						what += " (incremental)"
						break
					}
					refused++
					if eng.Ruleset() == nil {
						t.Fatalf("seed %d step %d: %s: a refused update cleared the ruleset", seed, step, what)
					}
					var err error
					if got, err = eng.Full(s); err != nil {
						t.Fatal(err)
					}
					what += " (full)"
				case 3:
					var ch policy.Change
					ch, what = g.LocalAdd(s)
					var ok bool
					if got, ok = eng.Update([]policy.Change{ch}); ok {
						localTaken++
						what += " (incremental)"
						break
					}
					localRefused++
					var err error
					if got, err = eng.Full(s); err != nil {
						t.Fatal(err)
					}
					what += " (full)"
				default:
					var ch policy.Change
					ch, what = g.RemoteChange(s)
					var ok bool
					if got, ok = eng.Update([]policy.Change{ch}); !ok {
						t.Fatalf("seed %d step %d: %s: not taken incrementally", seed, step, what)
					}
					incremental++
				}
				want, err := policy.Compile(s)
				if err != nil {
					t.Fatal(err)
				}
				if flat {
					want = policy.Flatten(want)
				}
				if g, w := renderTable(got), renderTable(want); g != w {
					t.Fatalf("seed %d flat=%v step %d (%s): incremental ruleset differs from a full compile\n%s",
						seed, flat, step, what, diffLines(w, g))
				}
			}
		}
	}
	t.Logf("%d incremental endpoint and network set changes, %d policy changes taken incrementally and %d refused, %d other full compiles; every result equal to a full compile",
		incremental, inert, refused, full)
	t.Logf("local endpoint changes: %d taken incrementally, %d compiled in full", localTaken, localRefused)
	if localTaken == 0 || localRefused == 0 {
		t.Fatalf("the local endpoint changes did not exercise both paths: %d incremental, %d refused", localTaken, localRefused)
	}
	if inert == 0 || refused == 0 {
		t.Fatalf("the policy changes did not exercise both paths: %d incremental, %d refused", inert, refused)
	}
}

// TestEngineLeavesLocalChangesToFull: a change of a local endpoint, of a
// policy that selects one or does not compile, or of anything but remote
// endpoints, network sets and policies is refused (the caller compiles in
// full), and the engine's ruleset is untouched.
func TestEngineLeavesLocalChangesToFull(t *testing.T) {
	g := NewRandom(7)
	s := g.State()
	eng := policy.NewEngine(true)
	before, err := eng.Full(s)
	if err != nil {
		t.Fatal(err)
	}
	var local, remote = s.Endpoints[0], WEP("node-2", "default", "r", "tbyr", []string{"10.65.200.1/32"}, map[string]string{"app": "web"}, "calico")
	if local.Spec.Node != Node {
		t.Fatalf("first endpoint is not local")
	}
	moved := *remote
	moved.Spec.Node = Node
	for name, chs := range map[string][]policy.Change{
		"local endpoint deleted":        {{Old: local}},
		"remote endpoint moved here":    {{Old: remote, New: &moved}},
		"a policy selecting them all":   {{New: GNP("p", 1, "all()", nil, nil)}},
		"a policy that does not parse":  {{New: GNP("p", 1, "app == 'x", nil, nil)}},
		"a policy in an unknown tier":   {{New: InTier("nope", GNP("p", 1, "has(remote-only)", nil, nil))}},
		"a profile":                     {{New: AllowAllProfile("x")}},
		"remote and then a local one":   {{New: remote}, {Old: local}},
		"a pool":                        {{New: Pool("p", "10.9.0.0/16", false)}},
		"a host endpoint (of any node)": {{New: HEP("node-2", "h", "eth0", nil)}},
	} {
		if _, ok := eng.Update(chs); ok {
			t.Errorf("%s: taken incrementally", name)
		}
		if eng.Ruleset() != before {
			t.Fatalf("%s: the refused change altered the engine's ruleset", name)
		}
	}
}

// diffLines shows the first lines where two texts differ.
func diffLines(want, got string) string {
	wl, gl := splitLines(want), splitLines(got)
	out := ""
	n := 0
	for i := 0; i < max(len(wl), len(gl)) && n < 12; i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			out += fmt.Sprintf("line %d\n  want %s\n  got  %s\n", i+1, w, g)
			n++
		}
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
