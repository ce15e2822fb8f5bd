package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// setSpec is what must match for a kernel set to be reused as is.
type setSpec struct {
	isMap    bool
	interval bool
	// keyMagic and keyLen are only known for plain sets: google/nftables
	// v0.3.0 overwrites the key type of a verdict map when decoding it.
	keyMagic uint32
	keyLen   uint32
	// timeout: a learned set (policy.SetLearned4/6), whose elements
	// carry their own timeouts and are the DNS forwarder's, not ours.
	timeout bool
}

func specOfSet(s *policy.Set) setSpec {
	kt := setKeyType(s.Type)
	return setSpec{interval: s.Type.Interval(), keyMagic: kt.GetNFTMagic(), keyLen: kt.Bytes, timeout: learned(s.Type)}
}

// learned reports whether sets of a type hold addresses learned at run
// time: the driver creates them and never adds or deletes their elements.
func learned(t policy.SetType) bool { return t == policy.SetLearned4 || t == policy.SetLearned6 }

func specOfMap() setSpec { return setSpec{isMap: true} }

func specOfKernel(s *nftables.Set) setSpec {
	if s.IsMap {
		return setSpec{isMap: true, interval: s.Interval}
	}
	return setSpec{interval: s.Interval, keyMagic: s.KeyType.GetNFTMagic(), keyLen: s.KeyType.Bytes, timeout: s.HasTimeout}
}

// kernelSet is a set or map as read from the kernel.
type kernelSet struct {
	spec   setSpec
	odd    bool // flags Tabby never sets (timeouts, constant, …): recreate
	tokens map[token]struct{}
}

// kernelChain is a chain as read from the kernel.
type kernelChain struct {
	hook  *policy.Hook // nil: regular chain
	odd   bool         // a base chain Tabby cannot express (policy drop, other hook)
	rules []string     // fingerprints
	exprs [][]expr.Any // the rules as read, for Dump
}

// kernelState is the table `inet tabby` as the kernel holds it.
type kernelState struct {
	exists bool
	sets   map[string]*kernelSet
	chains map[string]*kernelChain
}

func tableRef() *nftables.Table {
	return &nftables.Table{Name: policy.TableName, Family: nftables.TableFamilyINet}
}

// readKernel reads the whole table.
func readKernel(c *nftables.Conn, dumper *elementDumper) (*kernelState, error) {
	st := &kernelState{sets: map[string]*kernelSet{}, chains: map[string]*kernelChain{}}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == policy.TableName {
			st.exists = true
		}
	}
	if !st.exists {
		return st, nil
	}
	t := tableRef()
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		ks := &kernelSet{spec: specOfKernel(s), tokens: map[token]struct{}{}}
		ks.odd = s.Anonymous || s.Constant || s.Dynamic || s.Concatenation || s.HasTimeout && (s.IsMap || s.Interval)
		if s.IsMap && s.DataType.Name != "" && s.DataType.GetNFTMagic() != 0 {
			ks.odd = true // a data map, not a verdict map
		}
		if s.HasTimeout {
			// A learned set: its elements are not the driver's to diff.
			st.sets[s.Name] = ks
			continue
		}
		toks, err := dumper.elements(s.Name, s.IsMap)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		ks.tokens = tokenSet(toks)
		st.sets[s.Name] = ks
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != policy.TableName {
			continue
		}
		kc := &kernelChain{}
		if ch.Hooknum != nil {
			h, ok := hookOfKernel(ch)
			kc.hook, kc.odd = h, !ok
		}
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch.Name, Table: t})
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			fp, err := fingerprint(r.Exprs)
			if err != nil {
				// An expression google/nftables cannot re-encode:
				// hand-made, so it differs from ours.
				fp = "unencodable:" + err.Error()
			}
			kc.rules = append(kc.rules, fp)
			kc.exprs = append(kc.exprs, r.Exprs)
		}
		st.chains[ch.Name] = kc
	}
	return st, nil
}

// decodeVerdict reads the NFTA_DATA_VERDICT attributes of a map element.
func decodeVerdict(b []byte) (int64, string, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, "", err
	}
	ad.ByteOrder = binary.BigEndian
	var code int64
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int64(int32(ad.Uint32()))
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	return code, chain, ad.Err()
}

var hookPoints = map[nftables.ChainHook]policy.HookPoint{
	unix.NF_INET_PRE_ROUTING:  policy.HookPrerouting,
	unix.NF_INET_LOCAL_IN:     policy.HookInput,
	unix.NF_INET_FORWARD:      policy.HookForward,
	unix.NF_INET_LOCAL_OUT:    policy.HookOutput,
	unix.NF_INET_POST_ROUTING: policy.HookPostrouting,
}

func hookOfKernel(ch *nftables.Chain) (*policy.Hook, bool) {
	hp, ok := hookPoints[*ch.Hooknum]
	if !ok || ch.Priority == nil || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyAccept {
		return nil, false
	}
	return &policy.Hook{Type: policy.ChainType(ch.Type), Hook: hp, Priority: int32(*ch.Priority)}, true
}

func hookNum(h policy.HookPoint) *nftables.ChainHook {
	for k, v := range hookPoints {
		if v == h {
			return nftables.ChainHookRef(k)
		}
	}
	return nil
}

// describeExprs renders expressions for humans (Dump and test failures).
func describeExprs(exprs []expr.Any) string {
	parts := make([]string, 0, len(exprs))
	for _, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok {
			cp := *l
			cp.SetID = 0
			e = &cp
		}
		s := fmt.Sprintf("%T%+v", e, e)
		s = strings.TrimPrefix(s, "*expr.")
		parts = append(parts, strings.Replace(s, "&", "", 1))
	}
	return strings.Join(parts, " ")
}

// Dump renders the kernel's copy of the table canonically: sets with
// their elements (sorted), chains with their rules. Two tables with equal
// Dumps hold the same ruleset, however they got there.
func (st *kernelState) dump() string {
	if !st.exists {
		return "no table\n"
	}
	var b strings.Builder
	for _, name := range sortedKeys(st.sets) {
		s := st.sets[name]
		fmt.Fprintf(&b, "set %s %+v odd=%v\n", name, s.spec, s.odd)
		var toks []string
		for t := range s.tokens {
			toks = append(toks, fmt.Sprintf("  %x end=%v verdict=%d %s", t.key, t.end, t.vcode, t.chain))
		}
		slices.Sort(toks)
		for _, t := range toks {
			b.WriteString(t + "\n")
		}
	}
	for _, name := range sortedKeys(st.chains) {
		c := st.chains[name]
		fmt.Fprintf(&b, "chain %s", name)
		if c.hook != nil {
			fmt.Fprintf(&b, " hook %+v", *c.hook)
		}
		if c.odd {
			b.WriteString(" odd")
		}
		b.WriteString("\n")
		for _, r := range c.exprs {
			b.WriteString("  " + describeExprs(r) + "\n")
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// generation returns the ruleset generation: the kernel increments it on
// every committed nftables transaction, in any table of the namespace.
func (d *Driver) generation() (uint32, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: d.netnsFD})
	if err != nil {
		return 0, fmt.Errorf("dial netfilter netlink: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("decode nftables generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("get nftables generation: no generation in the answer")
}

func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT)
}
