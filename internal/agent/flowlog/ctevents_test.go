package flowlog

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func nla(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func tupleAttr(typ uint16, src, dst string, sport, dport uint16) []byte {
	return nla(typ|unix.NLA_F_NESTED, cat(
		nla(ctaTupleIP|unix.NLA_F_NESTED, cat(nla(ctaIPv4Src, netip.MustParseAddr(src).AsSlice()), nla(ctaIPv4Dst, netip.MustParseAddr(dst).AsSlice()))),
		nla(ctaTupleProto|unix.NLA_F_NESTED, cat(nla(ctaProtoNum, []byte{6}), nla(ctaProtoSrcPort, be16(sport)), nla(ctaProtoDstPort, be16(dport)))),
	))
}

func ctMessage(msgType uint16, body []byte) []byte {
	h := make([]byte, unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint32(h[0:4], uint32(unix.SizeofNlMsghdr+4+len(body)))
	binary.NativeEndian.PutUint16(h[4:6], unix.NFNL_SUBSYS_CTNETLINK<<8|msgType)
	return cat(h, []byte{unix.AF_INET, 0, 0, 0}, body)
}

// TestParseCTMessages: a NEW and a DESTROY event in one datagram give the
// ID, both tuples (the reply's source is the real destination) and, for
// the DESTROY, the counters; other messages and truncated ones are skipped.
func TestParseCTMessages(t *testing.T) {
	body := cat(tupleAttr(ctaTupleOrig, "10.65.0.2", "10.96.0.10", 40000, 80), tupleAttr(ctaTupleReply, "10.65.0.3", "10.65.0.2", 8080, 40000), nla(ctaID, be32(77)))
	counters := cat(nla(ctaCountersOrig|unix.NLA_F_NESTED, cat(nla(ctaCountersPackets, be64(5)), nla(ctaCountersBytes, be64(400)))),
		nla(ctaCountersReply|unix.NLA_F_NESTED, cat(nla(ctaCountersPackets, be64(4)), nla(ctaCountersBytes, be64(300)))))
	datagram := cat(ctMessage(ctMsgNew, body), ctMessage(1 /* IPCTNL_MSG_CT_GET */, body), ctMessage(ctMsgDelete, cat(body, counters)))
	var got []ctEvent
	parseCTMessages(datagram, func(ev *ctEvent) { got = append(got, *ev) })
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2", len(got))
	}
	n, d := got[0], got[1]
	want := ctTuple{src: netip.MustParseAddr("10.65.0.2"), dst: netip.MustParseAddr("10.96.0.10"), proto: 6, sport: 40000, dport: 80}
	if n.destroy || n.id != 77 || n.orig != want || n.reply.src != netip.MustParseAddr("10.65.0.3") || n.reply.sport != 8080 {
		t.Errorf("NEW event: got %+v", n)
	}
	if !d.destroy || d.origPackets != 5 || d.origBytes != 400 || d.replyPackets != 4 || d.replyBytes != 300 {
		t.Errorf("DESTROY event: got %+v", d)
	}
	if fl := ctFlow(&n, time.Now()); fl.dst != netip.MustParseAddr("10.65.0.3") || fl.dport != 8080 || fl.family != 4 {
		t.Errorf("the flow of a DNATed entry: got %s:%d (family %d), want the real destination 10.65.0.3:8080", fl.dst, fl.dport, fl.family)
	}
	for cut := 1; cut < len(datagram); cut += 7 {
		parseCTMessages(datagram[:cut], func(*ctEvent) {}) // must not panic
	}
}
