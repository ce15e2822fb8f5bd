package records

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Set is the complete, immutable answer data of the DNS server: every name
// with its records, the zones served authoritatively, and the Mesos-DNS
// enumeration of tasks. It is built by Build and never modified after.
type Set struct {
	// Zones are served authoritatively (SOA, NS, NXDOMAIN/NODATA).
	Zones []Zone
	// Names maps a lower-case fully qualified name ("app.marathon.mesos.")
	// to its records.
	Names map[string]*RRSet
	// Frameworks is the /v1/enumerate view: frameworks → tasks → records.
	Frameworks []EnumFramework
	// Warnings lists what was skipped and why (bad names, bad ports, …).
	Warnings []string
}

// RRSet holds the records of one name.
type RRSet struct {
	TTL  uint32
	A    []netip.Addr
	AAAA []netip.Addr
	SRV  []SRV
	PTR  []string
}

// SRV is one service record.
type SRV struct {
	Target   string
	Port     uint16
	Priority uint16
	Weight   uint16
}

// Zone is an authoritative zone.
type Zone struct {
	Name string // "mesos."
	TTL  uint32 // of the zone's SOA and NS records
	SOA  SOA
	NS   []string
}

// SOA holds the fields of a zone's SOA record except the serial, which the
// server assigns when it publishes a Set.
type SOA struct {
	Mname   string // "ns1.mesos."
	Rname   string // "root.ns1.mesos."
	Refresh uint32
	Retry   uint32
	Expire  uint32
	Minttl  uint32
}

// EnumFramework, EnumTask and EnumRecord have the JSON shape of Mesos-DNS's
// /v1/enumerate.
type EnumFramework struct {
	Tasks []EnumTask `json:"tasks"`
	Name  string     `json:"name"`
}

// EnumTask is one task and the records it produced.
type EnumTask struct {
	Name    string       `json:"name"`
	ID      string       `json:"id"`
	Records []EnumRecord `json:"records"`
}

// EnumRecord is one record: for SRV, Host is "target:port".
type EnumRecord struct {
	Name  string `json:"name"`
	Host  string `json:"host"`
	Rtype string `json:"rtype"`
}

// InZone says whether the lower-case FQDN name is zone or below it.
func InZone(name, zone string) bool {
	if len(name) == len(zone) {
		return name == zone
	}
	return len(name) > len(zone) && name[len(name)-len(zone)-1] == '.' && strings.HasSuffix(name, zone)
}

// Render prints the set as sorted zone-file lines, for golden tests and
// debugging.
func (s *Set) Render() string {
	var lines []string
	for _, z := range s.Zones {
		lines = append(lines, fmt.Sprintf("%s\t%d\tIN\tSOA\t%s %s %d %d %d %d", z.Name, z.TTL, z.SOA.Mname, z.SOA.Rname, z.SOA.Refresh, z.SOA.Retry, z.SOA.Expire, z.SOA.Minttl))
		for _, ns := range z.NS {
			lines = append(lines, fmt.Sprintf("%s\t%d\tIN\tNS\t%s", z.Name, z.TTL, ns))
		}
	}
	for name, rr := range s.Names {
		for _, ip := range rr.A {
			lines = append(lines, fmt.Sprintf("%s\t%d\tIN\tA\t%s", name, rr.TTL, ip))
		}
		for _, ip := range rr.AAAA {
			lines = append(lines, fmt.Sprintf("%s\t%d\tIN\tAAAA\t%s", name, rr.TTL, ip))
		}
		for _, srv := range rr.SRV {
			lines = append(lines, fmt.Sprintf("%s\t%d\tIN\tSRV\t%d %d %d %s", name, rr.TTL, srv.Priority, srv.Weight, srv.Port, srv.Target))
		}
		for _, p := range rr.PTR {
			lines = append(lines, fmt.Sprintf("%s\t%d\tIN\tPTR\t%s", name, rr.TTL, p))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// builder accumulates records without duplicates.
type builder struct {
	cfg        Config
	names      map[string]*acc
	warnings   []string
	dropped    int
	frameworks []*EnumFramework
	fwIndex    map[string]*EnumFramework
}

type acc struct {
	ttl uint32
	ips smallSet[netip.Addr]
	srv smallSet[SRV]
	ptr smallSet[string]
}

// smallSet keeps insertion order and finds duplicates by a linear scan
// while small (most names have one to three records), by a map after.
type smallSet[T comparable] struct {
	items []T
	index map[T]struct{}
}

func (s *smallSet[T]) add(v T) bool {
	if s.index != nil {
		if _, dup := s.index[v]; dup {
			return false
		}
		s.index[v] = struct{}{}
		s.items = append(s.items, v)
		return true
	}
	for _, x := range s.items {
		if x == v {
			return false
		}
	}
	s.items = append(s.items, v)
	if len(s.items) > 16 {
		s.index = make(map[T]struct{}, 2*len(s.items))
		for _, x := range s.items {
			s.index[x] = struct{}{}
		}
	}
	return true
}

const maxWarnings = 50

// newBuilder sizes its map for about sizeHint names up front: growing a
// map of 100,000 names step by step costs more than filling it.
func newBuilder(cfg Config, sizeHint int) *builder {
	return &builder{cfg: cfg, names: make(map[string]*acc, sizeHint), fwIndex: map[string]*EnumFramework{}}
}

func (b *builder) warnf(format string, args ...any) {
	if len(b.warnings) < maxWarnings {
		b.warnings = append(b.warnings, fmt.Sprintf(format, args...))
		return
	}
	b.dropped++
}

// entry returns the accumulator of a name, or nil (and a warning) when the
// name is not a valid domain name.
func (b *builder) entry(name string, ttl uint32) *acc {
	if e, ok := b.names[name]; ok {
		return e
	}
	if err := checkName(name); err != nil {
		b.warnf("skipped name %q: %v", name, err)
		return nil
	}
	e := &acc{ttl: ttl}
	b.names[name] = e
	return e
}

// addIP adds an A or AAAA record; it reports whether the record is new.
func (b *builder) addIP(name string, ttl uint32, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	e := b.entry(name, ttl)
	return e != nil && e.ips.add(ip)
}

func (b *builder) addSRV(name string, ttl uint32, target string, port uint16) bool {
	if checkName(target) != nil {
		return false
	}
	e := b.entry(name, ttl)
	return e != nil && e.srv.add(SRV{Target: target, Port: port, Weight: b.cfg.SRVWeight})
}

func (b *builder) addPTR(ip netip.Addr, target string) {
	if !ip.IsValid() || checkName(target) != nil {
		return
	}
	if e := b.entry(ReverseName(ip), b.cfg.TTL); e != nil {
		e.ptr.add(target)
	}
}

func (b *builder) framework(name string) *EnumFramework {
	if f, ok := b.fwIndex[name]; ok {
		return f
	}
	f := &EnumFramework{Name: name, Tasks: []EnumTask{}}
	b.fwIndex[name] = f
	b.frameworks = append(b.frameworks, f)
	return f
}

// freeze turns the accumulators into the immutable, sorted Set.
func (b *builder) freeze(zones []Zone) *Set {
	s := &Set{Zones: zones, Names: make(map[string]*RRSet, len(b.names)), Warnings: b.warnings}
	if b.dropped > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("… and %d more", b.dropped))
	}
	for name, e := range b.names {
		rr := &RRSet{TTL: e.ttl}
		for _, ip := range e.ips.items {
			if ip.Is4() {
				rr.A = append(rr.A, ip)
			} else {
				rr.AAAA = append(rr.AAAA, ip)
			}
		}
		slices.SortFunc(rr.A, netip.Addr.Compare)
		slices.SortFunc(rr.AAAA, netip.Addr.Compare)
		rr.SRV = e.srv.items
		slices.SortFunc(rr.SRV, func(x, y SRV) int {
			return cmp.Or(strings.Compare(x.Target, y.Target), cmp.Compare(x.Port, y.Port))
		})
		rr.PTR = e.ptr.items
		slices.Sort(rr.PTR)
		s.Names[name] = rr
	}
	for _, f := range b.frameworks {
		s.Frameworks = append(s.Frameworks, *f)
	}
	if s.Frameworks == nil {
		s.Frameworks = []EnumFramework{}
	}
	return s
}

// checkName accepts what the server can answer for: a lower-case FQDN of at
// most 253 characters whose labels are 1 to 63 characters of [a-z0-9-_].
func checkName(name string) error {
	if !strings.HasSuffix(name, ".") || name == "." {
		return fmt.Errorf("not a fully qualified name")
	}
	if len(name) > 254 {
		return fmt.Errorf("longer than 253 characters")
	}
	start := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '.' {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("label %q has character %q", labelAt(name, start), c)
			}
			continue
		}
		switch n := i - start; {
		case n == 0:
			return fmt.Errorf("empty label")
		case n > 63:
			return fmt.Errorf("label %q is longer than 63 characters", name[start:i])
		}
		start = i + 1
	}
	return nil
}

func labelAt(name string, start int) string {
	if i := strings.IndexByte(name[start:], '.'); i >= 0 {
		return name[start : start+i]
	}
	return name[start:]
}

// ReverseName is the in-addr.arpa or ip6.arpa name of an address.
func ReverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	var sb strings.Builder
	if ip.Is4() {
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			sb.WriteString(strconv.Itoa(int(a[i])))
			sb.WriteByte('.')
		}
		sb.WriteString("in-addr.arpa.")
		return sb.String()
	}
	const hex = "0123456789abcdef"
	a := ip.As16()
	for i := 15; i >= 0; i-- {
		sb.WriteByte(hex[a[i]&0xf])
		sb.WriteByte('.')
		sb.WriteByte(hex[a[i]>>4])
		sb.WriteByte('.')
	}
	sb.WriteString("ip6.arpa.")
	return sb.String()
}
