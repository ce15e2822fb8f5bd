package flows

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

func rec(src, dst string, sport, dport uint16, action string) FlowRecord {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return FlowRecord{Start: t0, End: t0.Add(time.Second), Node: "h1", Proto: "tcp", SrcIP: src, SrcPort: sport, DstIP: dst, DstPort: dport,
		Direction: Ingress, Action: action, Policy: PolicyRef{Kind: "NetworkPolicy", Namespace: "x", Name: "p", Rule: 0}, Packets: 1, Bytes: 60,
		Src: &Endpoint{Namespace: "x", Name: "a", Kind: KindWorkload}, Dst: &Endpoint{Namespace: "y", Name: "b", Kind: KindWorkload}}
}

// TestAggregateWindow: observations of one flow in a window become one
// record with summed counters; different source ports merge with port 0;
// another action or destination port is another record.
func TestAggregateWindow(t *testing.T) {
	ring := NewRing(10)
	a := NewAggregator(ring, 0)
	a.Add(rec("10.0.0.1", "10.0.0.2", 40000, 80, Allow))
	a.Add(rec("10.0.0.1", "10.0.0.2", 40000, 80, Allow))
	a.Add(rec("10.0.0.1", "10.0.0.2", 40001, 81, Allow))
	a.Add(rec("10.0.0.1", "10.0.0.2", 40002, 81, Allow))
	a.Add(rec("10.0.0.1", "10.0.0.2", 40003, 81, Deny))
	got := a.Flush()
	if len(got) != 3 {
		t.Fatalf("got %d records, want 3: %+v", len(got), got)
	}
	want := map[string]string{"80 allow": "40000 2", "81 allow": "0 2", "81 deny": "40003 1"}
	for _, r := range got {
		k := fmt.Sprintf("%d %s", r.DstPort, r.Action)
		if v := fmt.Sprintf("%d %d", r.SrcPort, r.Packets); v != want[k] {
			t.Errorf("%s: got srcPort, packets %s, want %s", k, v, want[k])
		}
	}
	if ring.Len() != 3 {
		t.Errorf("ring holds %d, want 3", ring.Len())
	}
	if n := len(a.Flush()); n != 0 {
		t.Errorf("a second flush gave %d records, want 0", n)
	}
}

// TestAggregateBounded: a window holds at most max flows; the rest are
// counted as overflow.
func TestAggregateBounded(t *testing.T) {
	a := NewAggregator(NewRing(100), 5)
	for i := range 8 {
		a.Add(rec("10.0.0.1", "10.0.0.2", 1, uint16(i+1), Allow))
	}
	if n := len(a.Flush()); n != 5 {
		t.Errorf("got %d records, want 5", n)
	}
	if a.Overflow() != 3 {
		t.Errorf("overflow %d, want 3", a.Overflow())
	}
}

// TestRingBounded: the ring keeps the newest Cap records, oldest first,
// and its memory stays bounded however many records pass through it.
func TestRingBounded(t *testing.T) {
	r := NewRing(4)
	for i := range 10 {
		r.Add(rec("10.0.0.1", "10.0.0.2", 1, uint16(i), Allow))
	}
	got := r.Snapshot(Filter{})
	if len(got) != 4 || got[0].DstPort != 6 || got[3].DstPort != 9 {
		t.Fatalf("got ports %v, want 6..9", ports(got))
	}
	if r.Added() != 10 {
		t.Errorf("added %d, want 10", r.Added())
	}

	// Memory: fill a default-size ring twice over; the heap after the
	// second pass is what it was after the first.
	var big *Ring
	fill := func(base int) {
		for i := range DefaultRingSize {
			x := rec(fmt.Sprintf("10.1.%d.%d", (base+i)/250%250, (base+i)%250), "10.0.0.2", uint16(i), 80, Allow)
			big.Add(x)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	big = NewRing(DefaultRingSize)
	fill(0)
	first := heap()
	fill(DefaultRingSize)
	second := heap()
	per := float64(first-before) / DefaultRingSize
	t.Logf("full ring of %d records: %.0f bytes per record, %.1f MiB", DefaultRingSize, per, float64(first-before)/(1<<20))
	if second > first+first/5+(1<<20) {
		t.Errorf("heap grew from %d to %d bytes on the second pass: the ring is not bounded", first, second)
	}
	runtime.KeepAlive(big)
}

func ports(rs []FlowRecord) []uint16 {
	var out []uint16
	for _, r := range rs {
		out = append(out, r.DstPort)
	}
	return out
}

// TestFilter: each filter field selects on what it names.
func TestFilter(t *testing.T) {
	r := rec("10.0.0.1", "10.0.0.2", 1, 80, Deny)
	r.PendingPolicy = &PolicyRef{Kind: "StagedNetworkPolicy", Namespace: "y", Name: "staged", Rule: 1}
	for _, tc := range []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty", Filter{}, true},
		{"namespace of the source", Filter{Namespace: "x"}, true},
		{"namespace of the destination", Filter{Namespace: "y"}, true},
		{"other namespace", Filter{Namespace: "z"}, false},
		{"endpoint by name", Filter{Endpoint: "b"}, true},
		{"endpoint by ns/name", Filter{Endpoint: "x/a"}, true},
		{"endpoint wrong ns", Filter{Endpoint: "y/a"}, false},
		{"policy", Filter{Policy: "p"}, true},
		{"pending policy", Filter{Policy: "y/staged"}, true},
		{"other policy", Filter{Policy: "q"}, false},
		{"action", Filter{Action: Deny}, true},
		{"other action", Filter{Action: Allow}, false},
		{"since before", Filter{Since: r.End.Add(-time.Second)}, true},
		{"since after", Filter{Since: r.End.Add(time.Second)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Match(&r); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestHandler: GET /flows serves filtered NDJSON; follow streams records
// added later; bad parameters are refused naming the value.
func TestHandler(t *testing.T) {
	ring := NewRing(100)
	ring.Add(rec("10.0.0.1", "10.0.0.2", 1, 80, Allow), rec("10.0.0.1", "10.0.0.2", 1, 81, Deny))
	srv := httptest.NewServer(Handler(ring))
	defer srv.Close()

	var got []FlowRecord
	if err := Fetch(context.Background(), nil, srv.URL, Filter{Action: Deny}, false, func(r FlowRecord) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].DstPort != 81 {
		t.Fatalf("got %v, want the deny on port 81", ports(got))
	}

	for _, q := range []string{"action=maybe", "since=yesterday", "follow=2"} {
		resp, err := http.Get(srv.URL + Path + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(b.String(), strings.SplitN(q, "=", 2)[1]) {
			t.Errorf("%s: got %d %q, want 400 naming the value", q, resp.StatusCode, b.String())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seen := make(chan FlowRecord, 10)
	done := make(chan error, 1)
	go func() {
		done <- Fetch(ctx, nil, srv.URL, Filter{}, true, func(r FlowRecord) error { seen <- r; return nil })
	}()
	for range 2 {
		<-seen
	}
	ring.Add(rec("10.0.0.1", "10.0.0.2", 1, 82, Allow))
	select {
	case r := <-seen:
		if r.DstPort != 82 {
			t.Errorf("followed record has port %d, want 82", r.DstPort)
		}
	case <-ctx.Done():
		t.Fatal("the followed record never came")
	}
	cancel()
	<-done
	b, _ := json.Marshal(rec("a", "b", 1, 2, Allow))
	for _, field := range []string{`"start"`, `"end"`, `"node"`, `"proto"`, `"srcIP"`, `"srcPort"`, `"dstIP"`, `"dstPort"`, `"direction"`, `"src"`, `"dst"`, `"action"`, `"policy"`, `"packets"`, `"bytes"`, `"rule"`, `"kind"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("record JSON %s lacks %s", b, field)
		}
	}
}
