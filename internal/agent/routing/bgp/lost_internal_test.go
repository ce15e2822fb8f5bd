package bgp

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestTrack: a session that ends after a silence of two thirds of its
// hold time or more is lost; one that ends right after a message (a
// restart) is not; the next look comes a sixth of the shortest hold time
// later.
func TestTrack(t *testing.T) {
	t0 := time.Unix(1000, 0)
	hold := 90 * time.Second
	up := func(addr string, received uint64) sessionState {
		return sessionState{addr: addr, established: true, received: received, hold: hold}
	}
	down := func(addr string) sessionState { return sessionState{addr: addr} }
	tests := []struct {
		name  string
		looks [][]sessionState // tc.gap apart
		gap   time.Duration    // time between looks
		want  []string
	}{
		{"silent for the hold time", [][]sessionState{{up("p", 5)}, {up("p", 5)}, {down("p")}}, 45 * time.Second, []string{"p"}},
		{"keepalives, then closed", [][]sessionState{{up("p", 5)}, {up("p", 6)}, {up("p", 7)}, {down("p")}}, 30 * time.Second, nil},
		{"silent for under two thirds", [][]sessionState{{up("p", 5)}, {down("p")}}, 59 * time.Second, nil},
		{"never up", [][]sessionState{{down("p")}, {down("p")}}, 100 * time.Second, nil},
		{"only the silent one", [][]sessionState{{up("p", 1), up("q", 1)}, {up("p", 1), up("q", 2)}, {down("p"), down("q")}}, 31 * time.Second, []string{"p"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			known := map[string]*heard{}
			var got []string
			now := t0
			for _, look := range tc.looks {
				lost, _ := track(known, look, now)
				for _, l := range lost {
					got = append(got, l.addr)
				}
				now = now.Add(tc.gap)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("lost peers (-want +got):\n%s", diff)
			}
		})
	}
	_, every := track(map[string]*heard{}, []sessionState{{addr: "p", established: true, hold: 3 * time.Second}, {addr: "q", established: true, hold: hold}}, t0)
	if every != 500*time.Millisecond {
		t.Errorf("next look after %s, want 500ms (a sixth of the shortest hold time)", every)
	}
}
