package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// TableName is the name of Tabby's nftables table (family inet). Tabby never
// touches any other table.
const TableName = "tabby"

// Mark bits Tabby uses on packets while they walk its chains. A policy or
// profile chain that allows a packet sets MarkAccept and returns; one that
// passes it sets MarkPass and returns. Endpoint chains clear both first.
const (
	MarkAccept uint32 = 0x10000
	MarkPass   uint32 = 0x20000
	markBits          = MarkAccept | MarkPass
)

// Ruleset is the compiled policy of one host: everything the table
// `inet tabby` must hold. Sets, Maps and Chains are sorted by name, and the
// elements of every set and map are sorted, so two equal states compile to
// equal Rulesets.
type Ruleset struct {
	Sets   []*Set
	Maps   []*Map
	Chains []*Chain
	// Warnings lists conflicts the compiler resolved on its own (for
	// example two local endpoints mapping the same host port); the agent
	// logs them.
	Warnings []string
	// Quarantined lists the policies and profiles that could not be
	// compiled, sorted by ID: their chains drop everything.
	Quarantined []Quarantine
	// Origins maps each policy and profile chain of Compile's output to
	// what it was compiled from (origins.go); transforms drop it.
	Origins map[string]ChainOrigin
}

// PolicyCount is the number of policies and profiles with a chain in the
// ruleset (a policy chain per direction: pi-/po-, gpi-/gpo-, pri-/pro-).
// Count it on Compile's output: Flatten inlines most of those chains.
func (r *Ruleset) PolicyCount() int {
	seen := map[string]bool{}
	for _, c := range r.Chains {
		for _, p := range [][2]string{{"pi-", "po-"}, {"gpi-", "gpo-"}, {"pri-", "pro-"}} {
			for _, pre := range p {
				if rest, ok := strings.CutPrefix(c.Name, pre); ok && c.Hook == nil {
					seen[p[0]+rest] = true
				}
			}
		}
	}
	return len(seen)
}

// Set returns the named set, or nil.
func (r *Ruleset) Set(name string) *Set {
	i, ok := slices.BinarySearchFunc(r.Sets, name, func(s *Set, n string) int { return cmp.Compare(s.Name, n) })
	if !ok {
		return nil
	}
	return r.Sets[i]
}

// Map returns the named verdict map, or nil.
func (r *Ruleset) Map(name string) *Map {
	i, ok := slices.BinarySearchFunc(r.Maps, name, func(m *Map, n string) int { return cmp.Compare(m.Name, n) })
	if !ok {
		return nil
	}
	return r.Maps[i]
}

// Chain returns the named chain, or nil.
func (r *Ruleset) Chain(name string) *Chain {
	i, ok := slices.BinarySearchFunc(r.Chains, name, func(c *Chain, n string) int { return cmp.Compare(c.Name, n) })
	if !ok {
		return nil
	}
	return r.Chains[i]
}

// SetType is the key type of a named set.
type SetType uint8

const (
	// SetAddr4 holds IPv4 prefixes (an interval set).
	SetAddr4 SetType = iota + 1
	// SetAddr6 holds IPv6 prefixes (an interval set).
	SetAddr6
	// SetPort holds port ranges (an interval set of inet_service).
	SetPort
	// SetIfAddr4 holds (interface name, IPv4 address) pairs.
	SetIfAddr4
	// SetIfAddr6 holds (interface name, IPv6 address) pairs.
	SetIfAddr6
	// SetAddrPort4 holds (IPv4 address, protocol, port) triples: named ports.
	SetAddrPort4
	// SetAddrPort6 holds (IPv6 address, protocol, port) triples.
	SetAddrPort6
	// SetLearned4 holds IPv4 addresses learned from DNS answers, each
	// with its own timeout (flags timeout); the compiler knows none of
	// them (see domains.go).
	SetLearned4
	// SetLearned6 is SetLearned4 for IPv6.
	SetLearned6
)

// Interval reports whether elements of the set are ranges.
func (t SetType) Interval() bool { return t == SetAddr4 || t == SetAddr6 || t == SetPort }

// Family returns 4 or 6 for typed address sets, 0 otherwise.
func (t SetType) Family() int {
	switch t {
	case SetAddr4, SetIfAddr4, SetAddrPort4, SetLearned4:
		return 4
	case SetAddr6, SetIfAddr6, SetAddrPort6, SetLearned6:
		return 6
	}
	return 0
}

// Set is a named set. Rules refer to it by name; its elements change
// without touching those rules.
type Set struct {
	Name    string
	Type    SetType
	Comment string
	// Elements are sorted (see Element.Compare) and, for interval sets,
	// never overlap: no prefix contains another, no port ranges overlap.
	Elements []Element
	// Members, for a union of address sets (u4-/u6-, made by MergeRules
	// and DispatchPorts), are what it is the union of: "@<set>" and
	// literal prefixes. The incremental Engine recomputes a union when a
	// member's elements change.
	Members []string
	// Domains, for a learned set (SetLearned4/6), are the domain patterns
	// whose answers' addresses the DNS forwarder adds to it.
	Domains []string
	// MaxElements bounds a learned set in the kernel (0: no bound).
	MaxElements uint32
}

// Element is one member of a set or the key of a map element. Which fields
// are used depends on the set type:
//
//	SetAddr4/6:      Prefix
//	SetPort:         Port..PortEnd (inclusive)
//	SetIfAddr4/6:    IfName, Addr
//	SetAddrPort4/6:  Addr, Proto, Port
//	MapIfName:       IfName
//	MapProtoPort:    Proto, Port
type Element struct {
	Prefix  netip.Prefix
	IfName  string
	Addr    netip.Addr
	Proto   uint8
	Port    uint16
	PortEnd uint16
}

// Compare orders elements; sets keep their elements in this order.
func (e Element) Compare(o Element) int {
	if c := e.Prefix.Addr().Compare(o.Prefix.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(e.Prefix.Bits(), o.Prefix.Bits()); c != 0 {
		return c
	}
	if c := cmp.Compare(e.IfName, o.IfName); c != 0 {
		return c
	}
	if c := e.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(e.Proto, o.Proto); c != 0 {
		return c
	}
	if c := cmp.Compare(e.Port, o.Port); c != 0 {
		return c
	}
	return cmp.Compare(e.PortEnd, o.PortEnd)
}

// MapType is the key type of a verdict map.
type MapType uint8

const (
	// MapIfName maps an interface name to a verdict.
	MapIfName MapType = iota + 1
	// MapProtoPort maps (protocol, port) to a verdict.
	MapProtoPort
)

// Map is a named verdict map: the dispatch tables that keep the number of
// rules a packet walks independent of the number of endpoints.
type Map struct {
	Name     string
	Type     MapType
	Comment  string
	Elements []MapElement // sorted by Key
}

// MapElement is one key → verdict entry of a Map.
type MapElement struct {
	Key     Element
	Verdict Verdict
}

// Chain is a chain of rules; a chain with a Hook is a base chain (its policy
// is always accept: Tabby's table only ever drops what it owns).
type Chain struct {
	Name  string
	Hook  *Hook
	Rules []Rule
}

// Hook attaches a base chain to a netfilter hook.
type Hook struct {
	Type     ChainType
	Hook     HookPoint
	Priority int32
}

// ChainType is the nftables chain type of a base chain.
type ChainType string

// Chain types.
const (
	TypeFilter ChainType = "filter"
	TypeNAT    ChainType = "nat"
)

// HookPoint is a netfilter hook.
type HookPoint string

// Hook points.
const (
	HookPrerouting  HookPoint = "prerouting"
	HookInput       HookPoint = "input"
	HookForward     HookPoint = "forward"
	HookOutput      HookPoint = "output"
	HookPostrouting HookPoint = "postrouting"
)

// Standard priorities.
const (
	PriorityRaw    int32 = -300
	PriorityDstNAT int32 = -100
	PriorityFilter int32 = 0
	PrioritySrcNAT int32 = 100
)

// Rule is a list of matches (all must hold), then statements, then a
// verdict. A rule without a verdict lets the packet continue.
type Rule struct {
	Matches []Match
	Stmts   []Stmt
	Verdict Verdict
}

// Equal reports whether two rules are the same. Matches and statements are
// comparable values, so this is cheap.
func (r Rule) Equal(o Rule) bool {
	return r.Verdict == o.Verdict && slices.Equal(r.Matches, o.Matches) && slices.Equal(r.Stmts, o.Stmts)
}

// RulesEqual reports whether two rule lists are the same.
func RulesEqual(a, b []Rule) bool {
	return slices.EqualFunc(a, b, Rule.Equal)
}

// VerdictKind is what a rule does with a packet once its matches hold.
type VerdictKind uint8

const (
	// Continue: no verdict, evaluation goes on with the next rule.
	Continue VerdictKind = iota
	Accept
	Drop
	Return
	Jump
	Goto
	// VMap looks the packet's Key up in the verdict map Map; no element,
	// no verdict.
	VMap
)

// Verdict ends a rule.
type Verdict struct {
	Kind  VerdictKind
	Chain string // Jump, Goto
	Map   string // VMap
	Key   MapKey // VMap
}

// MapKey says what a VMap verdict looks up.
type MapKey uint8

const (
	// KeyIIfName looks up the input interface name.
	KeyIIfName MapKey = iota + 1
	// KeyOIfName looks up the output interface name.
	KeyOIfName
	// KeyProtoDport looks up (layer 4 protocol, destination port).
	KeyProtoDport
)

// Direction selects the source or destination side of a packet.
type Direction uint8

const (
	Src Direction = iota + 1
	Dst
)

// Match is one condition of a rule. Every implementation is a comparable
// struct, so rules compare with ==.
type Match interface{ isMatch() }

// Stmt is a statement of a rule: it does something and lets evaluation go on.
type Stmt interface{ isStmt() }

// IfName matches the input (In) or output interface name; with Prefix it
// matches every name starting with Name.
type IfName struct {
	Out    bool
	Name   string
	Prefix bool
	Neg    bool
}

// NFProto matches the IP family: 4 or 6.
type NFProto struct{ Family int }

// L4Proto matches the layer 4 protocol number.
type L4Proto struct {
	Proto uint8
	Neg   bool
}

// CtState matches packets whose conntrack state has any of the bits in
// State (CtEstablished|CtRelated, CtInvalid, …).
type CtState struct{ State uint32 }

// Conntrack states (the kernel's bit values).
const (
	CtInvalid     uint32 = 1
	CtEstablished uint32 = 2
	CtRelated     uint32 = 4
	CtNew         uint32 = 8
)

// AddrPrefix matches the source or destination address against one prefix.
type AddrPrefix struct {
	Dir    Direction
	Prefix netip.Prefix
	Neg    bool
}

// AddrSet matches the source or destination address against a named set of
// type SetAddr4/6; Family says which header is read.
type AddrSet struct {
	Family int
	Dir    Direction
	Set    string
	Neg    bool
}

// Port matches the source or destination port against Min..Max (inclusive).
// Rules with a Port match always match a protocol with ports first.
type Port struct {
	Dir      Direction
	Min, Max uint16
	Neg      bool
}

// PortSet matches the source or destination port against a SetPort set.
type PortSet struct {
	Dir Direction
	Set string
	Neg bool
}

// AddrPortSet matches (address, protocol, port) of the source or
// destination against a SetAddrPort4/6 set: how named ports are resolved.
type AddrPortSet struct {
	Family int
	Dir    Direction
	Set    string
	Neg    bool
}

// IfAddrSet matches (input interface, source address) against a
// SetIfAddr4/6 set: the anti-spoofing check.
type IfAddrSet struct {
	Family int
	Set    string
	Neg    bool
}

// ICMP matches the ICMP (Family 4) or ICMPv6 (Family 6) type and, with
// HasCode, code. Neg negates the whole match: not (type and code).
type ICMP struct {
	Family  int
	Type    uint8
	HasCode bool
	Code    uint8
	Neg     bool
}

// ICMPTypes matches ICMP/ICMPv6 types in Min..Max.
type ICMPTypes struct {
	Family   int
	Min, Max uint8
}

// Mark matches packets whose mark & Mask equals Value (Neg: differs).
type Mark struct {
	Mask, Value uint32
	Neg         bool
}

// FibDaddrLocal matches packets whose destination is an address of this host.
type FibDaddrLocal struct{}

func (IfName) isMatch()        {}
func (NFProto) isMatch()       {}
func (L4Proto) isMatch()       {}
func (CtState) isMatch()       {}
func (AddrPrefix) isMatch()    {}
func (AddrSet) isMatch()       {}
func (Port) isMatch()          {}
func (PortSet) isMatch()       {}
func (AddrPortSet) isMatch()   {}
func (IfAddrSet) isMatch()     {}
func (ICMP) isMatch()          {}
func (ICMPTypes) isMatch()     {}
func (Mark) isMatch()          {}
func (FibDaddrLocal) isMatch() {}

// Log logs the packet with Prefix (at most 127 bytes) and goes on.
type Log struct{ Prefix string }

// SetMark sets the packet mark to (mark & And) ^ Xor.
type SetMark struct{ And, Xor uint32 }

// Masquerade source-NATs to the address of the outgoing interface.
type Masquerade struct{}

// SNAT source-NATs to Addr.
type SNAT struct{ Addr netip.Addr }

// DNAT destination-NATs to Addr:Port.
type DNAT struct {
	Addr netip.Addr
	Port uint16
}

func (Log) isStmt()        {}
func (SetMark) isStmt()    {}
func (Masquerade) isStmt() {}
func (SNAT) isStmt()       {}
func (DNAT) isStmt()       {}
