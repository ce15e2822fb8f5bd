package flowlog

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkNewFlow: the agent's work per new connection with flow logs on
// (after the kernel event is decoded): attribution (cached replay),
// aggregation, tracking, and the DESTROY that ends it.
func BenchmarkNewFlow(b *testing.B) {
	c, err := New(Config{Node: "node-a"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	c.attr.SetState(attrState(), nil)
	s := &ctSource{c: c, tracked: map[uint32]*tracked{}}
	web, db := netip.MustParseAddr("10.65.0.2"), netip.MustParseAddr("10.65.0.3")
	now := time.Now()
	b.ReportAllocs()
	for i := range b.N {
		ev := &ctEvent{id: uint32(i),
			orig:  ctTuple{src: web, dst: db, proto: 6, sport: uint16(i), dport: 80},
			reply: ctTuple{src: db, dst: web, proto: 6, sport: 80, dport: uint16(i)}}
		s.event(ev, now)
		ev.destroy, ev.origPackets, ev.origBytes, ev.replyPackets, ev.replyBytes = true, 3, 180, 2, 120
		s.event(ev, now)
		if i%10000 == 0 {
			c.agg.Flush()
		}
	}
}
