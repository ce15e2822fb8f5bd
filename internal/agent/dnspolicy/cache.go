package dnspolicy

import (
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// maxCached bounds the answer cache.
const maxCached = 10000

// answerCache keeps positive answers for their smallest TTL, so repeated
// lookups of a name are answered on the node without asking upstream and
// without a kernel write. Only answers whose addresses were learned are
// stored (ServeDNS puts after learn), and the cache is cleared whenever
// the learned sets change or the kernel lost them: a cached answer never
// names an address a rule allows but the sets lack. Remaining TTLs count
// down as in any cache. The forwarder's mu guards it.
type answerCache struct {
	max     int
	entries map[string]cached
}

type cached struct {
	msg     *mdns.Msg
	stored  time.Time
	expires time.Time
	// wire is msg packed with its TTLs reduced by wireAge seconds: a hit
	// in the same second copies it and sets the ID, without unpacking or
	// packing.
	wire    []byte
	wireAge uint32
}

func newAnswerCache(max int) *answerCache {
	return &answerCache{max: max, entries: map[string]cached{}}
}

func (c *answerCache) clear() { c.entries = map[string]cached{} }

// cacheKey is the question, the flags that change the answer, and the
// transport (a TCP answer may not fit a UDP client).
func cacheKey(q *mdns.Msg, isTCP bool) (string, bool) {
	if len(q.Question) != 1 || q.Opcode != mdns.OpcodeQuery {
		return "", false
	}
	qq := q.Question[0]
	// Name, then type, class and flags as bytes.
	var flags byte
	if opt := q.IsEdns0(); opt != nil {
		flags |= 1
		if opt.Do() {
			flags |= 2
		}
	}
	if q.CheckingDisabled {
		flags |= 4
	}
	if isTCP {
		flags |= 8
	}
	b := make([]byte, 0, len(qq.Name)+5)
	b = append(b, strings.ToLower(qq.Name)...)
	b = append(b, byte(qq.Qtype>>8), byte(qq.Qtype), byte(qq.Qclass>>8), byte(qq.Qclass), flags)
	return string(b), true
}

// put stores a positive, complete answer for its smallest TTL.
func (c *answerCache) put(key string, r *mdns.Msg, now time.Time) {
	if r.Rcode != mdns.RcodeSuccess || r.Truncated || len(r.Answer) == 0 {
		return
	}
	ttl := uint32(1<<31 - 1)
	for _, rrs := range [][]mdns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range rrs {
			if rr.Header().Rrtype == mdns.TypeOPT {
				continue
			}
			ttl = min(ttl, rr.Header().Ttl)
		}
	}
	if ttl == 0 {
		return
	}
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !e.expires.After(now) || len(c.entries) >= c.max {
				delete(c.entries, k)
			}
			if len(c.entries) < c.max*9/10 {
				break
			}
		}
	}
	c.entries[key] = cached{msg: r.Copy(), stored: now, expires: now.Add(time.Duration(ttl) * time.Second)}
}

// get returns the wire form of a live entry as the answer to q, TTLs
// reduced by its age; nil when there is none or it does not fit the
// client's UDP size.
func (c *answerCache) get(key string, q *mdns.Msg, now time.Time, isTCP bool) []byte {
	e, ok := c.entries[key]
	if !ok {
		return nil
	}
	if !e.expires.After(now) {
		delete(c.entries, key)
		return nil
	}
	age := uint32(now.Sub(e.stored) / time.Second)
	if e.wire == nil || e.wireAge != age {
		r := e.msg.Copy()
		for _, rrs := range [][]mdns.RR{r.Answer, r.Ns, r.Extra} {
			for _, rr := range rrs {
				if h := rr.Header(); h.Rrtype != mdns.TypeOPT {
					h.Ttl -= min(age, h.Ttl)
				}
			}
		}
		b, err := r.Pack()
		if err != nil {
			return nil
		}
		e.wire, e.wireAge = b, age
		c.entries[key] = e
	}
	if !isTCP {
		size := mdns.MinMsgSize
		if opt := q.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		}
		if len(e.wire) > size {
			return nil // ask upstream: its answer will fit (or be truncated)
		}
	}
	out := make([]byte, len(e.wire))
	copy(out, e.wire)
	out[0], out[1] = byte(q.Id>>8), byte(q.Id)
	return out
}
