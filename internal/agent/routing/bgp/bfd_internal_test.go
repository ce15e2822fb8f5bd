package bgp

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNoteBFD: every change of a session's BFD state is reported once
// (a new BFD session starts from Down); a BFD session that goes away
// (switched off, or its peer removed) is reported Down; sessions without
// BFD are not reported.
func TestNoteBFD(t *testing.T) {
	var got []string
	s := New(Options{OnBFDTransition: func(p netip.Addr, from, to string) {
		got = append(got, p.String()+" "+from+">"+to)
	}})
	bfd := func(addr, state string) sessionState { return sessionState{addr: addr, bfd: state} }
	seen := map[string]string{}
	looks := [][]sessionState{
		{bfd("10.0.0.1", "Down"), bfd("10.0.0.2", "")},
		{bfd("10.0.0.1", "Init"), bfd("10.0.0.2", "")},
		{bfd("10.0.0.1", "Up"), bfd("10.0.0.2", "")},
		{bfd("10.0.0.1", "Up"), bfd("10.0.0.2", "Up")},
		{bfd("10.0.0.1", "Down"), bfd("10.0.0.2", "Up")},
		{bfd("10.0.0.1", "Down")},
	}
	var has []bool
	for _, l := range looks {
		has = append(has, s.noteBFD(seen, l))
	}
	want := []string{"10.0.0.1 Down>Init", "10.0.0.1 Init>Up", "10.0.0.2 Down>Up", "10.0.0.1 Up>Down", "10.0.0.2 Up>Down"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]bool{true, true, true, true, true, true}, has); diff != "" {
		t.Errorf("any BFD session (-want +got):\n%s", diff)
	}
	if s.noteBFD(seen, []sessionState{bfd("10.0.0.3", "")}) {
		t.Error("noteBFD reports BFD sessions where none has BFD")
	}
}
