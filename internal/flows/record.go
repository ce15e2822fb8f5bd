// Package flows holds the flow record every agent serves on GET /flows
// (docs/design/policy.md "Flow logs"), the windowed aggregation and the
// bounded ring that keep them, the HTTP handler that streams them and the
// client the CLI and the console read them with.
//
// It imports the standard library only: the agent, the CLI and the
// console all import it, it imports none of them.
package flows

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Path is where the agent serves its flows.
const Path = "/flows"

// Actions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Directions, relative to the local endpoint the record is about.
const (
	Ingress = "ingress"
	Egress  = "egress"
)

// Endpoint kinds.
const (
	KindWorkload = "wep"
	KindHost     = "hep"
	KindNet      = "net"
)

// Policy kinds beyond the resource kinds: Default is a verdict no policy
// or profile made (the dispatch drop, an accept of the base chains).
const (
	PolicyKindDefault = "default"
	PolicyKindProfile = "Profile"
)

// FlowRecord is one aggregated flow of a local endpoint in one window:
// the API contract of GET /flows (one JSON object per line).
type FlowRecord struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Node      string    `json:"node"`
	Proto     string    `json:"proto"` // tcp, udp, icmp, icmpv6 or the number
	SrcIP     string    `json:"srcIP"`
	SrcPort   uint16    `json:"srcPort"` // 0 when the window merged several source ports
	DstIP     string    `json:"dstIP"`
	DstPort   uint16    `json:"dstPort"`   // for ICMP, the type
	Direction string    `json:"direction"` // ingress or egress, relative to the local endpoint
	Src       *Endpoint `json:"src,omitempty"`
	Dst       *Endpoint `json:"dst,omitempty"`
	Action    string    `json:"action"` // allow or deny
	// PendingAction is the verdict the staged policies would give; only
	// where a staged policy applies.
	PendingAction string     `json:"pendingAction,omitempty"`
	Policy        PolicyRef  `json:"policy"`
	PendingPolicy *PolicyRef `json:"pendingPolicy,omitempty"`
	// Packets and Bytes are what the flow carried in the window, both
	// directions together (a denied flow: the packets logged).
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Endpoint is one side of a flow, as far as the agent knows it.
type Endpoint struct {
	Namespace string            `json:"namespace,omitempty"`
	Name      string            `json:"name,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	App       string            `json:"app,omitempty"`  // the Mesos/Marathon app, where known
	Kind      string            `json:"kind,omitempty"` // wep, hep or net
}

// PolicyRef names what decided a flow.
type PolicyRef struct {
	Tier      string `json:"tier,omitempty"`
	Name      string `json:"name,omitempty"`
	Kind      string `json:"kind"` // GlobalNetworkPolicy, NetworkPolicy, KubernetesNetworkPolicy, Profile or default
	Namespace string `json:"namespace,omitempty"`
	// Rule is the index of the deciding rule in the policy's ingress or
	// egress rules; -1 for the end-of-tier default (or no profile
	// allowing it).
	Rule int `json:"rule"`
}

// String is "tier/kind/[namespace/]name#rule", for tables and filters.
func (p PolicyRef) String() string {
	var b strings.Builder
	if p.Tier != "" {
		b.WriteString(p.Tier + "/")
	}
	b.WriteString(p.Kind)
	if p.Namespace != "" {
		b.WriteString("/" + p.Namespace)
	}
	if p.Name != "" {
		b.WriteString("/" + p.Name)
	}
	b.WriteString("#" + strconv.Itoa(p.Rule))
	return b.String()
}

// ProtoName names an IP protocol number as the records do.
func ProtoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// Local is the endpoint the record is about: the destination of an
// ingress record, the source of an egress one.
func (r *FlowRecord) Local() *Endpoint {
	if r.Direction == Ingress {
		return r.Dst
	}
	return r.Src
}

// Filter selects records: the query parameters of GET /flows and the
// flags of `tabby flows`. The zero Filter selects everything.
type Filter struct {
	Since     time.Time // records ending at or after it
	Namespace string    // either side's namespace
	Endpoint  string    // either side's name ("ns/name" or "name")
	Policy    string    // the deciding or pending policy: its name, "namespace/name" or PolicyRef.String()
	Action    string    // allow or deny
}

// ParseSince reads --since / ?since=: an RFC 3339 time, or a Go duration
// back from now.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("since: %q is neither an RFC 3339 time nor a duration such as 5m", s)
	}
	return now.Add(-d), nil
}

// Validate checks the fields that have a fixed set of values.
func (f Filter) Validate() error {
	switch f.Action {
	case "", Allow, Deny:
		return nil
	}
	return fmt.Errorf("action: %q is not allow or deny", f.Action)
}

// Match reports whether the filter selects r.
func (f Filter) Match(r *FlowRecord) bool {
	if !f.Since.IsZero() && r.End.Before(f.Since) {
		return false
	}
	if f.Action != "" && r.Action != f.Action {
		return false
	}
	if f.Namespace != "" && !sideMatch(r, func(e *Endpoint) bool { return e.Namespace == f.Namespace }) {
		return false
	}
	if f.Endpoint != "" && !sideMatch(r, func(e *Endpoint) bool {
		return e.Name == f.Endpoint || e.Namespace+"/"+e.Name == f.Endpoint || e.App == f.Endpoint
	}) {
		return false
	}
	if f.Policy != "" && !policyMatch(r.Policy, f.Policy) && (r.PendingPolicy == nil || !policyMatch(*r.PendingPolicy, f.Policy)) {
		return false
	}
	return true
}

func sideMatch(r *FlowRecord, ok func(*Endpoint) bool) bool {
	return r.Src != nil && ok(r.Src) || r.Dst != nil && ok(r.Dst)
}

func policyMatch(p PolicyRef, want string) bool {
	return p.Name == want || p.Namespace+"/"+p.Name == want || p.String() == want
}
