package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// Registers. NFT_REG_1 is 16 bytes wide and overlaps the 32-bit registers
// NFT_REG32_00..03; concatenations load their parts into consecutive
// 32-bit registers starting there.
const (
	reg1     = unix.NFT_REG_1
	reg2     = unix.NFT_REG_2
	reg32_01 = unix.NFT_REG32_01
	reg32_02 = unix.NFT_REG32_02
	reg32_05 = unix.NFT_REG32_05
)

const ifNameLen = 16

// Set datatypes of every policy.SetType and policy.MapType.
var (
	typeIfAddr4   = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)
	typeIfAddr6   = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr)
	typeAddrPort4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	typeAddrPort6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	typeProtoPort = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
)

func setKeyType(t policy.SetType) nftables.SetDatatype {
	switch t {
	case policy.SetAddr4, policy.SetLearned4:
		return nftables.TypeIPAddr
	case policy.SetAddr6, policy.SetLearned6:
		return nftables.TypeIP6Addr
	case policy.SetPort:
		return nftables.TypeInetService
	case policy.SetIfAddr4:
		return typeIfAddr4
	case policy.SetIfAddr6:
		return typeIfAddr6
	case policy.SetAddrPort4:
		return typeAddrPort4
	case policy.SetAddrPort6:
		return typeAddrPort6
	}
	return nftables.TypeInvalid
}

func mapKeyType(t policy.MapType) nftables.SetDatatype {
	if t == policy.MapProtoPort {
		return typeProtoPort
	}
	return nftables.TypeIFName
}

// ifNameBytes is an interface name as the kernel compares it: NUL-padded
// to IFNAMSIZ.
func ifNameBytes(name string) []byte {
	b := make([]byte, ifNameLen)
	copy(b, name)
	return b
}

func be16(v uint16) []byte { return binaryutil.BigEndian.PutUint16(v) }

// pad4 pads a value to a 32-bit register slot, as concatenations need.
func pad4(b []byte) []byte {
	if r := len(b) % 4; r != 0 {
		b = append(b, make([]byte, 4-r)...)
	}
	return b
}

// token is one kernel set element, as a comparable value: its key, its
// interval-end flag and (maps) its verdict.
type token struct {
	key     string
	end     bool
	verdict bool   // a map element: vcode and chain are its verdict
	vcode   int64  // verdict code
	chain   string // verdict chain
}

// setTokens turns the elements of a policy set into kernel elements.
// Interval sets get a start element and, unless the range ends at the
// last value, an interval-end element one past its end (google/nftables
// does not add it for us).
func setTokens(s *policy.Set) []token {
	out := make([]token, 0, 2*len(s.Elements))
	for _, e := range s.Elements {
		switch s.Type {
		case policy.SetAddr4, policy.SetAddr6:
			start := e.Prefix.Masked().Addr()
			out = append(out, token{key: string(start.AsSlice())})
			if end, ok := prefixEnd(e.Prefix); ok {
				out = append(out, token{key: string(end.AsSlice()), end: true})
			}
		case policy.SetPort:
			out = append(out, token{key: string(be16(e.Port))})
			if e.PortEnd < 0xffff {
				out = append(out, token{key: string(be16(e.PortEnd + 1)), end: true})
			}
		case policy.SetIfAddr4, policy.SetIfAddr6:
			out = append(out, token{key: string(append(ifNameBytes(e.IfName), e.Addr.AsSlice()...))})
		case policy.SetAddrPort4, policy.SetAddrPort6:
			k := append(e.Addr.AsSlice(), pad4([]byte{e.Proto})...)
			k = append(k, pad4(be16(e.Port))...)
			out = append(out, token{key: string(k)})
		}
	}
	return out
}

// prefixEnd returns the first address after p, or false when p reaches
// the end of the address space.
func prefixEnd(p netip.Prefix) (netip.Addr, bool) {
	p = p.Masked()
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := bits; i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	next := last.Next()
	if !next.IsValid() || next.IsUnspecified() {
		return netip.Addr{}, false
	}
	return next, true
}

func mapTokens(m *policy.Map) []token {
	out := make([]token, 0, len(m.Elements))
	for _, e := range m.Elements {
		var key []byte
		if m.Type == policy.MapIfName {
			key = ifNameBytes(e.Key.IfName)
		} else {
			key = append(pad4([]byte{e.Key.Proto}), pad4(be16(e.Key.Port))...)
		}
		v := verdictExpr(e.Verdict)
		out = append(out, token{key: string(key), verdict: true, vcode: int64(v.Kind), chain: v.Chain})
	}
	return out
}

func verdictExpr(v policy.Verdict) *expr.Verdict {
	switch v.Kind {
	case policy.Accept:
		return &expr.Verdict{Kind: expr.VerdictAccept}
	case policy.Drop:
		return &expr.Verdict{Kind: expr.VerdictDrop}
	case policy.Return:
		return &expr.Verdict{Kind: expr.VerdictReturn}
	case policy.Jump:
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}
	case policy.Goto:
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}
	}
	return nil
}

func nfproto(family int) byte {
	if family == 6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// addrOffset is where the source or destination address sits in the IPv4
// or IPv6 header.
func addrOffset(family int, dir policy.Direction) (offset, length uint32) {
	switch {
	case family == 4 && dir == policy.Src:
		return 12, 4
	case family == 4:
		return 16, 4
	case dir == policy.Src:
		return 8, 16
	default:
		return 24, 16
	}
}

func loadAddr(family int, dir policy.Direction, reg uint32) *expr.Payload {
	off, n := addrOffset(family, dir)
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func loadPort(dir policy.Direction, reg uint32) *expr.Payload {
	off := uint32(2)
	if dir == policy.Src {
		off = 0
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}
}

func cmpOp(neg bool) expr.CmpOp {
	if neg {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

func lookup(set string, reg uint32, neg bool) *expr.Lookup {
	return &expr.Lookup{SourceRegister: reg, SetName: set, Invert: neg}
}

// matchExprs translates one match.
func matchExprs(m policy.Match) ([]expr.Any, error) {
	switch m := m.(type) {
	case policy.IfName:
		key := expr.MetaKeyIIFNAME
		if m.Out {
			key = expr.MetaKeyOIFNAME
		}
		data := []byte(m.Name)
		if !m.Prefix {
			data = ifNameBytes(m.Name)
		}
		return []expr.Any{
			&expr.Meta{Key: key, Register: reg1},
			&expr.Cmp{Op: cmpOp(m.Neg), Register: reg1, Data: data},
		}, nil
	case policy.NFProto:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto(m.Family)}},
		}, nil
	case policy.L4Proto:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: cmpOp(m.Neg), Register: reg1, Data: []byte{m.Proto}},
		}, nil
	case policy.CtState:
		return []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(m.State), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
		}, nil
	case policy.AddrPrefix:
		fam := 4
		if m.Prefix.Addr().Is6() {
			fam = 6
		}
		p := m.Prefix.Masked()
		exprs := []expr.Any{loadAddr(fam, m.Dir, reg1)}
		if !p.IsSingleIP() {
			n := len(p.Addr().AsSlice())
			mb := make([]byte, n)
			for i := 0; i < p.Bits(); i++ {
				mb[i/8] |= 0x80 >> (i % 8)
			}
			exprs = append(exprs, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(n), Mask: mb, Xor: make([]byte, n)})
		}
		return append(exprs, &expr.Cmp{Op: cmpOp(m.Neg), Register: reg1, Data: p.Addr().AsSlice()}), nil
	case policy.AddrSet:
		return []expr.Any{loadAddr(m.Family, m.Dir, reg1), lookup(m.Set, reg1, m.Neg)}, nil
	case policy.Port:
		if m.Min == m.Max {
			return []expr.Any{loadPort(m.Dir, reg1), &expr.Cmp{Op: cmpOp(m.Neg), Register: reg1, Data: be16(m.Min)}}, nil
		}
		return []expr.Any{loadPort(m.Dir, reg1), &expr.Range{Op: cmpOp(m.Neg), Register: reg1, FromData: be16(m.Min), ToData: be16(m.Max)}}, nil
	case policy.PortSet:
		return []expr.Any{loadPort(m.Dir, reg1), lookup(m.Set, reg1, m.Neg)}, nil
	case policy.AddrPortSet:
		// addr . l4proto . port: the address fills 1 (IPv4) or 4 (IPv6)
		// 32-bit registers from NFT_REG32_00.
		// The kernel reports a 32-bit register that starts a 16-byte one
		// by the 16-byte name, so we use that name too (NFT_REG_2 is
		// NFT_REG32_04): fingerprints then match what we read back.
		r2, r3 := uint32(reg32_01), uint32(reg32_02)
		if m.Family == 6 {
			r2, r3 = reg2, reg32_05
		}
		return []expr.Any{
			loadAddr(m.Family, m.Dir, reg1),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r2},
			loadPort(m.Dir, r3),
			lookup(m.Set, reg1, m.Neg),
		}, nil
	case policy.IfAddrSet:
		// iifname . saddr: the name fills NFT_REG_1 (16 bytes), the
		// address starts at NFT_REG_2.
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			loadAddr(m.Family, policy.Src, reg2),
			lookup(m.Set, reg1, m.Neg),
		}, nil
	case policy.ICMP:
		if m.HasCode && m.Neg {
			return []expr.Any{
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{m.Type, m.Code}},
			}, nil
		}
		exprs := []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: cmpOp(m.Neg), Register: reg1, Data: []byte{m.Type}},
		}
		if m.HasCode {
			exprs = append(exprs,
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 1, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{m.Code}})
		}
		return exprs, nil
	case policy.ICMPTypes:
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{m.Min}, ToData: []byte{m.Max}},
		}, nil
	case policy.Mark:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(m.Mask), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: cmpOp(m.Neg), Register: reg1, Data: binaryutil.NativeEndian.PutUint32(m.Value)},
		}, nil
	case policy.Limit:
		return []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(m.Rate), Unit: expr.LimitTimeSecond, Burst: m.Burst}}, nil
	case policy.FibDaddrLocal:
		return []expr.Any{
			&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		}, nil
	}
	return nil, fmt.Errorf("unknown match %T", m)
}

// logLevelWarn is the level the kernel reports for a log statement that
// sets none.
const logLevelWarn = 4

func stmtExprs(s policy.Stmt) ([]expr.Any, error) {
	switch s := s.(type) {
	case policy.Log:
		return []expr.Any{&expr.Log{
			Key:   1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_LEVEL,
			Level: logLevelWarn,
			Data:  []byte(s.Prefix),
		}}, nil
	case policy.LogGroup:
		return []expr.Any{&expr.Log{
			Key:   1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX,
			Group: s.Group,
			Data:  []byte(s.Prefix),
		}}, nil
	case policy.SetMark:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(s.And), Xor: binaryutil.NativeEndian.PutUint32(s.Xor)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		}, nil
	case policy.Masquerade:
		return []expr.Any{&expr.Masq{}}, nil
	case policy.SNAT:
		return []expr.Any{
			&expr.Immediate{Register: reg1, Data: s.Addr.AsSlice()},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: uint32(nfproto(familyOf(s.Addr))), RegAddrMin: reg1, RegAddrMax: reg1},
		}, nil
	case policy.DNAT:
		return []expr.Any{
			&expr.Immediate{Register: reg1, Data: s.Addr.AsSlice()},
			&expr.Immediate{Register: reg2, Data: be16(s.Port)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(nfproto(familyOf(s.Addr))),
				RegAddrMin: reg1, RegAddrMax: reg1, RegProtoMin: reg2, RegProtoMax: reg2, Specified: true},
		}, nil
	}
	return nil, fmt.Errorf("unknown statement %T", s)
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// ruleExprs translates one rule.
func ruleExprs(r policy.Rule) ([]expr.Any, error) {
	var out []expr.Any
	for _, m := range r.Matches {
		e, err := matchExprs(m)
		if err != nil {
			return nil, err
		}
		out = append(out, e...)
	}
	for _, s := range r.Stmts {
		e, err := stmtExprs(s)
		if err != nil {
			return nil, err
		}
		out = append(out, e...)
	}
	switch r.Verdict.Kind {
	case policy.Continue:
	case policy.VMap:
		switch r.Verdict.Key {
		case policy.KeyIIfName:
			out = append(out, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1})
		case policy.KeyOIfName:
			out = append(out, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1})
		case policy.KeyProtoDport:
			out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}, loadPort(policy.Dst, reg32_01))
		default:
			return nil, fmt.Errorf("unknown map key %d", r.Verdict.Key)
		}
		out = append(out, &expr.Lookup{SourceRegister: reg1, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true, SetName: r.Verdict.Map})
	default:
		v := verdictExpr(r.Verdict)
		if v == nil {
			return nil, fmt.Errorf("unknown verdict %d", r.Verdict.Kind)
		}
		out = append(out, v)
	}
	return out, nil
}

// fingerprint is the canonical byte form of a rule's expressions: two rules
// with equal fingerprints do the same. Set IDs (batch-local) are ignored.
func fingerprint(exprs []expr.Any) (string, error) {
	var b []byte
	for _, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok && l.SetID != 0 {
			cp := *l
			cp.SetID = 0
			e = &cp
		}
		m, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil {
			return "", fmt.Errorf("marshal %T: %w", e, err)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return string(b), nil
}
