package ipam

import (
	"math/bits"
	"net/netip"
)

// Block sizes (prefix lengths) a pool may use, as Calico.
const (
	MinBlockSize4 = 20
	MaxBlockSize4 = 32
	MinBlockSize6 = 116
	MaxBlockSize6 = 128
)

// u128 is an address as a 128-bit unsigned number (IPv4 in its low 32 bits).
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

func fromU128(x u128, is4 bool) netip.Addr {
	if is4 {
		v := uint32(x.lo)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	var b [16]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(x.hi)
		b[8+i] = byte(x.lo)
		x.hi >>= 8
		x.lo >>= 8
	}
	return netip.AddrFrom16(b)
}

func (x u128) add(y u128) u128 {
	lo, c := bits.Add64(x.lo, y.lo, 0)
	hi, _ := bits.Add64(x.hi, y.hi, c)
	return u128{hi, lo}
}

func (x u128) sub(y u128) u128 {
	lo, b := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, b)
	return u128{hi, lo}
}

// shl returns n << s as a 128-bit number (s < 128).
func shl(n uint64, s int) u128 {
	switch {
	case s == 0:
		return u128{lo: n}
	case s < 64:
		return u128{hi: n >> (64 - s), lo: n << s}
	default:
		return u128{hi: n << (s - 64)}
	}
}

// addrBits is 32 or 128.
func addrBits(a netip.Addr) int { return a.BitLen() }

// blockLen is the number of addresses in a block of prefix length bits
// for the family of a; only block sizes of the allowed ranges are asked
// for, so it is at most 4096.
func blockLen(p netip.Prefix) int { return 1 << (addrBits(p.Addr()) - p.Bits()) }

// validBlockSize reports whether bits is an allowed block size for the family.
func validBlockSize(is4 bool, bits int) bool {
	if is4 {
		return bits >= MinBlockSize4 && bits <= MaxBlockSize4
	}
	return bits >= MinBlockSize6 && bits <= MaxBlockSize6
}

// ordinalAddr is the address at ordinal o of block b.
func ordinalAddr(b netip.Prefix, o int) netip.Addr {
	return fromU128(toU128(b.Addr()).add(u128{lo: uint64(o)}), b.Addr().Is4())
}

// addrOrdinal is the ordinal of a in block b, or false when a is not in b.
func addrOrdinal(b netip.Prefix, a netip.Addr) (int, bool) {
	if !b.Contains(a) {
		return 0, false
	}
	d := toU128(a).sub(toU128(b.Addr()))
	return int(d.lo), true
}

// subPrefix is the idx-th prefix of length bits inside p (idx counted from
// p's first address). The caller keeps idx below 2^(bits-p.Bits()).
func subPrefix(p netip.Prefix, bits int, idx uint64) netip.Prefix {
	a := p.Masked().Addr()
	off := shl(idx, addrBits(a)-bits)
	return netip.PrefixFrom(fromU128(toU128(a).add(off), a.Is4()), bits)
}

// blockContaining is the block of prefix length bits that holds a.
func blockContaining(a netip.Addr, bits int) netip.Prefix {
	p, _ := a.Prefix(bits)
	return p
}
