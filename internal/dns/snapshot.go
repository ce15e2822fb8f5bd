package dns

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/dns/records"
)

// snapshot is the immutable answer data queries read. A new one replaces
// the old with one atomic pointer store, so a query never takes a lock and
// always sees one consistent set of records.
type snapshot struct {
	set    *records.Set
	serial uint32
	built  time.Time
	// ready is false until every source made its first attempt; until
	// then our zones answer SERVFAIL rather than a cacheable NXDOMAIN.
	ready bool
	zones []*zoneData // longest name first
	names map[string]*nameData
	// ents are names that own no records but have names below them
	// (empty non-terminals such as "marathon.slave.mesos."): NODATA, not
	// NXDOMAIN.
	ents map[string]*zoneData
}

type zoneData struct {
	name    string
	soa     *mdns.SOA
	ns      []mdns.RR
	nsExtra []mdns.RR // A/AAAA of the NS targets we know
}

type nameData struct {
	zone  *zoneData // nil for PTR names outside our zones
	a     []mdns.RR
	aaaa  []mdns.RR
	srv   []mdns.RR
	ptr   []mdns.RR
	extra []mdns.RR // A/AAAA of SRV targets, for the additional section
}

func (n *nameData) all() []mdns.RR {
	return slices.Concat(n.a, n.aaaa, n.srv, n.ptr)
}

// newSnapshot turns a record set into wire-ready records.
func newSnapshot(set *records.Set, serial uint32, ready bool) *snapshot {
	s := &snapshot{set: set, serial: serial, built: time.Now(), ready: ready,
		names: make(map[string]*nameData, len(set.Names)), ents: map[string]*zoneData{}}
	for _, z := range set.Zones {
		zd := &zoneData{name: z.Name, soa: &mdns.SOA{
			Hdr:     mdns.RR_Header{Name: z.Name, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: z.TTL},
			Ns:      z.SOA.Mname,
			Mbox:    z.SOA.Rname,
			Serial:  serial,
			Refresh: z.SOA.Refresh,
			Retry:   z.SOA.Retry,
			Expire:  z.SOA.Expire,
			Minttl:  z.SOA.Minttl,
		}}
		for _, ns := range z.NS {
			zd.ns = append(zd.ns, &mdns.NS{Hdr: mdns.RR_Header{Name: z.Name, Rrtype: mdns.TypeNS, Class: mdns.ClassINET, Ttl: z.TTL}, Ns: ns})
		}
		s.zones = append(s.zones, zd)
	}
	slices.SortFunc(s.zones, func(a, b *zoneData) int { return len(b.name) - len(a.name) })

	for name, rr := range set.Names {
		nd := &nameData{zone: s.zoneFor(name)}
		nd.a = addrRRs(name, rr.TTL, rr.A)
		nd.aaaa = addrRRs(name, rr.TTL, rr.AAAA)
		for _, r := range rr.SRV {
			nd.srv = append(nd.srv, &mdns.SRV{
				Hdr:      mdns.RR_Header{Name: name, Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: rr.TTL},
				Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: r.Target,
			})
		}
		for _, p := range rr.PTR {
			nd.ptr = append(nd.ptr, &mdns.PTR{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: rr.TTL}, Ptr: p})
		}
		s.names[name] = nd
		if nd.zone == nil {
			continue
		}
		// Every ancestor below the apex exists, even without records. Stop
		// at one already known: its own ancestors were walked with it.
		for n := name; ; {
			i := strings.IndexByte(n, '.')
			if i < 0 || i == len(n)-1 {
				break
			}
			n = n[i+1:]
			if n == nd.zone.name || !records.InZone(n, nd.zone.name) || set.Names[n] != nil || s.ents[n] != nil {
				break
			}
			s.ents[n] = nd.zone
		}
	}
	// Additional sections share the records of the names they point at.
	for _, zd := range s.zones {
		for _, ns := range zd.ns {
			zd.nsExtra = append(zd.nsExtra, s.addrsOf(ns.(*mdns.NS).Ns, nil)...)
		}
	}
	for _, nd := range s.names {
		var seen []string
		for _, rr := range nd.srv {
			if t := rr.(*mdns.SRV).Target; !slices.Contains(seen, t) {
				seen = append(seen, t)
				nd.extra = s.addrsOf(t, nd.extra)
			}
		}
	}
	return s
}

// addrsOf appends the A and AAAA records of name to out.
func (s *snapshot) addrsOf(name string, out []mdns.RR) []mdns.RR {
	if t := s.names[name]; t != nil {
		out = append(append(out, t.a...), t.aaaa...)
	}
	return out
}

func addrRRs(name string, ttl uint32, ips []netip.Addr) []mdns.RR {
	if len(ips) == 0 {
		return nil
	}
	// One allocation for all records of the name, not one per record.
	out := make([]mdns.RR, len(ips))
	if ips[0].Is4() {
		rrs := make([]mdns.A, len(ips))
		for i, ip := range ips {
			rrs[i] = mdns.A{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: ttl}, A: net.IP(ip.AsSlice())}
			out[i] = &rrs[i]
		}
		return out
	}
	rrs := make([]mdns.AAAA, len(ips))
	for i, ip := range ips {
		rrs[i] = mdns.AAAA{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: ttl}, AAAA: net.IP(ip.AsSlice())}
		out[i] = &rrs[i]
	}
	return out
}

// zoneFor returns the authoritative zone of a lower-case FQDN, or nil.
func (s *snapshot) zoneFor(name string) *zoneData {
	for _, z := range s.zones {
		if records.InZone(name, z.name) {
			return z
		}
	}
	return nil
}
