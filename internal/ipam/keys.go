package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
)

// Datastore layout, as Calico's /calico/ipam/v2/ tree under datastore.IPAMPrefix:
//
//	assignment/ipv4/block/10.0.0.0-26          block (blockValue)
//	host/<node>/ipv4/block/10.0.0.0-26         affinity (affinityValue)
//	handle/<handle id>                         handle (handleValue)
const (
	assignmentPrefix = datastore.IPAMPrefix + "assignment/"
	hostPrefix       = datastore.IPAMPrefix + "host/"
	handlePrefix     = datastore.IPAMPrefix + "handle/"
)

// Affinity states (Calico's BlockAffinityState). Tabby never writes
// pendingDeletion: it deletes a block and its affinity in one transaction.
const (
	StatePending         = "pending"
	StateConfirmed       = "confirmed"
	StatePendingDeletion = "pendingDeletion"
)

// affinityValue is what host/<node>/ipvN/block/<cidr> holds.
type affinityValue struct {
	State   string `json:"state"`
	Deleted bool   `json:"deleted"`
	// PendingSince is when a pending claim started (Tabby extension): a
	// claim still pending after Config.ClaimTimeout was abandoned by a host
	// that died, and no longer holds other hosts back.
	PendingSince *time.Time `json:"pendingSince,omitempty"`
}

// handleValue is what handle/<id> holds: how many addresses the handle has
// in each block (Calico's IPAMHandle).
type handleValue struct {
	Block   map[string]int `json:"block"`
	Deleted bool           `json:"deleted"`
}

func familyDir(fam int) string { return fmt.Sprintf("ipv%d", fam) }

// cidrSegment writes a CIDR as a key segment: "/" becomes "-".
func cidrSegment(p netip.Prefix) string { return strings.Replace(p.String(), "/", "-", 1) }

// parseCIDRSegment reads a key segment written by cidrSegment.
func parseCIDRSegment(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR key segment", s)
	}
	p, err := netip.ParsePrefix(s[:i] + "/" + s[i+1:])
	if err != nil || p.Masked() != p || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR key segment", s)
	}
	return p, nil
}

func blockKeyPrefix(fam int) string { return assignmentPrefix + familyDir(fam) + "/block/" }

func blockKey(p netip.Prefix) string {
	return blockKeyPrefix(familyOf(p.Addr())) + cidrSegment(p)
}

func affinityKey(node string, p netip.Prefix) string {
	return hostPrefix + node + "/" + familyDir(familyOf(p.Addr())) + "/block/" + cidrSegment(p)
}

func handleKey(id string) string { return handlePrefix + id }

// parseBlockKey reads assignment/ipvN/block/<cidr>.
func parseBlockKey(key string) (netip.Prefix, error) {
	rest, ok := strings.CutPrefix(key, assignmentPrefix)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("key %q is not a block key", key)
	}
	dir, seg, ok := strings.Cut(rest, "/block/")
	if !ok || (dir != "ipv4" && dir != "ipv6") {
		return netip.Prefix{}, fmt.Errorf("key %q is not a block key", key)
	}
	p, err := parseCIDRSegment(seg)
	if err != nil || familyDir(familyOf(p.Addr())) != dir {
		return netip.Prefix{}, fmt.Errorf("key %q is not a block key", key)
	}
	return p, nil
}

// parseAffinityKey reads host/<node>/ipvN/block/<cidr>.
func parseAffinityKey(key string) (string, netip.Prefix, error) {
	rest, ok := strings.CutPrefix(key, hostPrefix)
	bad := fmt.Errorf("key %q is not an affinity key", key)
	if !ok {
		return "", netip.Prefix{}, bad
	}
	node, rest, ok := strings.Cut(rest, "/")
	if !ok || node == "" {
		return "", netip.Prefix{}, bad
	}
	dir, seg, ok := strings.Cut(rest, "/block/")
	if !ok || (dir != "ipv4" && dir != "ipv6") {
		return "", netip.Prefix{}, bad
	}
	p, err := parseCIDRSegment(seg)
	if err != nil || familyDir(familyOf(p.Addr())) != dir {
		return "", netip.Prefix{}, bad
	}
	return node, p, nil
}

// parseHandleKey reads handle/<id>.
func parseHandleKey(key string) (string, error) {
	id, ok := strings.CutPrefix(key, handlePrefix)
	if !ok || checkHandle(id) != nil {
		return "", fmt.Errorf("key %q is not a handle key", key)
	}
	return id, nil
}

// MaxHandleLen bounds a handle ID.
const MaxHandleLen = 512

// checkHandle rejects handle IDs that cannot be a key segment.
func checkHandle(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("handle: is required")
	case len(id) > MaxHandleLen:
		return fmt.Errorf("handle: %d characters long; at most %d are allowed", len(id), MaxHandleLen)
	}
	for _, r := range id {
		if r == '/' || r <= ' ' || r == 0x7f || r == '\uFFFD' {
			return fmt.Errorf("handle: %q contains %q; use letters, digits and punctuation other than '/'", id, r)
		}
	}
	return nil
}

// checkNode rejects node names that cannot be a key segment.
func checkNode(field, node string) error {
	switch {
	case node == "":
		return fmt.Errorf("%s: is required", field)
	case len(node) > 253:
		return fmt.Errorf("%s: %d characters long; at most 253 are allowed", field, len(node))
	}
	for _, r := range node {
		if r == '/' || r <= ' ' || r == 0x7f || r == '\uFFFD' {
			return fmt.Errorf("%s: %q contains %q, which a node name cannot", field, node, r)
		}
	}
	return nil
}

// HandleID is the handle of one container interface: <network>.<containerID>.<ifname>.
func HandleID(network, containerID, ifname string) string {
	return network + "." + containerID + "." + ifname
}

// Tunnel address handles: live while their Node exists.
const (
	VXLANTunnelHandlePrefix = "vxlan-tunnel-addr-"
	IPIPTunnelHandlePrefix  = "ipip-tunnel-addr-"
)

func decodeAffinity(data []byte) (affinityValue, error) {
	var v affinityValue
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("decode affinity: %w", err)
	}
	switch v.State {
	case StatePending, StateConfirmed, StatePendingDeletion:
	case "":
		v.State = StateConfirmed // Calico before v3.0 wrote no state: the affinity was confirmed
	default:
		return v, fmt.Errorf("decode affinity: unknown state %q", v.State)
	}
	return v, nil
}

func decodeHandle(data []byte) (handleValue, error) {
	var v handleValue
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("decode handle: %w", err)
	}
	for k, n := range v.Block {
		if _, err := netip.ParsePrefix(k); err != nil || n < 0 {
			return v, fmt.Errorf("decode handle: block %q count %d", k, n)
		}
	}
	return v, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ipam: encode %T: %v", v, err)) // plain data: cannot fail
	}
	return b
}
