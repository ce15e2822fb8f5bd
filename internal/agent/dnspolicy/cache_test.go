package dnspolicy

import (
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestAnswerCache: a hit carries the asker's ID and TTLs counted down;
// entries end at their smallest TTL; negative and truncated answers are
// not kept; an answer larger than a UDP client's size is not served.
func TestAnswerCache(t *testing.T) {
	c := newAnswerCache(10)
	t0 := time.Unix(1000, 0)
	q := new(mdns.Msg)
	q.SetQuestion("api.example.com.", mdns.TypeA)
	r := new(mdns.Msg)
	r.SetReply(q)
	for _, s := range []string{"api.example.com. 30 IN CNAME e.cdn.test.", "e.cdn.test. 10 IN A 192.0.2.1"} {
		rr, _ := mdns.NewRR(s)
		r.Answer = append(r.Answer, rr)
	}
	key, _ := cacheKey(q, false)
	c.put(key, r, t0)
	q2 := q.Copy()
	q2.Id = 4242
	b := c.get(key, q2, t0.Add(3500*time.Millisecond), false)
	if b == nil {
		t.Fatal("no hit 3.5 s after the put")
	}
	got := new(mdns.Msg)
	if err := got.Unpack(b); err != nil {
		t.Fatal(err)
	}
	if got.Id != 4242 {
		t.Errorf("ID = %d, want the asker's 4242", got.Id)
	}
	if ttl := got.Answer[1].Header().Ttl; ttl != 7 {
		t.Errorf("A TTL after 3.5 s = %d, want 10 - 3 = 7", ttl)
	}
	if ttl := got.Answer[0].Header().Ttl; ttl != 27 {
		t.Errorf("CNAME TTL after 3.5 s = %d, want 27", ttl)
	}
	if c.get(key, q2, t0.Add(10*time.Second), false) != nil {
		t.Error("a hit after the smallest TTL (10 s)")
	}
	nx := new(mdns.Msg)
	nx.SetRcode(q, mdns.RcodeNameError)
	c.put(key, nx, t0)
	if c.get(key, q, t0, false) != nil {
		t.Error("a negative answer was cached")
	}
	big := r.Copy()
	for range 60 {
		rr, _ := mdns.NewRR("e.cdn.test. 10 IN A 192.0.2.2")
		big.Answer = append(big.Answer, rr)
	}
	c.put(key, big, t0)
	if c.get(key, q, t0, false) != nil {
		t.Error("a 900-byte answer was served to a UDP client without EDNS")
	}
	if c.get(key, q, t0, true) == nil {
		t.Error("the same answer was not served over TCP")
	}
}
