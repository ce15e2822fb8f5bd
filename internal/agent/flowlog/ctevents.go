package flowlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ctEvents reads conntrack NEW and DESTROY events from a netlink socket
// of its own: one recvfrom per event and a parser that reads only what a
// flow record needs (ID, tuples, counters) without allocating, because at
// thousands of new connections per second this is the flow log's main
// cost (ti-mo/conntrack's Listen peeks and decodes every attribute; it is
// still used for the per-window dumps, which come in large batches).

// ctnetlink constants (linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlGroupCTNew     = 1 // NFNLGRP_CONNTRACK_NEW
	nfnlGroupCTDestroy = 3 // NFNLGRP_CONNTRACK_DESTROY

	ctMsgNew    = 0 // IPCTNL_MSG_CT_NEW
	ctMsgDelete = 2 // IPCTNL_MSG_CT_DELETE

	ctaTupleOrig     = 1
	ctaTupleReply    = 2
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaID            = 12

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum      = 1
	ctaProtoSrcPort  = 2
	ctaProtoDstPort  = 3
	ctaProtoICMPType = 5
	ctaProtoICMPCode = 6
	ctaProtoICMP6Typ = 8
	ctaProtoICMP6Cod = 9

	ctaCountersPackets = 1
	ctaCountersBytes   = 2

	nlaTypeMask = 0x3fff
)

// ctTuple is one direction of a conntrack entry.
type ctTuple struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	icmpType     uint8
	icmpCode     uint8
}

// ctEvent is a parsed conntrack event.
type ctEvent struct {
	destroy      bool
	id           uint32
	orig, reply  ctTuple
	origPackets  uint64
	origBytes    uint64
	replyPackets uint64
	replyBytes   uint64
}

// attrs calls fn for each netlink attribute in b.
func attrs(b []byte, fn func(typ uint16, data []byte)) {
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		if n < 4 || n > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[4:n])
		n = (n + 3) &^ 3
		if n > len(b) {
			return
		}
		b = b[n:]
	}
}

func parseTuple(b []byte) ctTuple {
	var t ctTuple
	attrs(b, func(typ uint16, d []byte) {
		switch typ {
		case ctaTupleIP:
			attrs(d, func(typ uint16, d []byte) {
				switch {
				case (typ == ctaIPv4Src || typ == ctaIPv4Dst) && len(d) == 4, (typ == ctaIPv6Src || typ == ctaIPv6Dst) && len(d) == 16:
					a, _ := netip.AddrFromSlice(d)
					if typ == ctaIPv4Src || typ == ctaIPv6Src {
						t.src = a
					} else {
						t.dst = a
					}
				}
			})
		case ctaTupleProto:
			attrs(d, func(typ uint16, d []byte) {
				switch {
				case typ == ctaProtoNum && len(d) >= 1:
					t.proto = d[0]
				case typ == ctaProtoSrcPort && len(d) == 2:
					t.sport = binary.BigEndian.Uint16(d)
				case typ == ctaProtoDstPort && len(d) == 2:
					t.dport = binary.BigEndian.Uint16(d)
				case (typ == ctaProtoICMPType || typ == ctaProtoICMP6Typ) && len(d) >= 1:
					t.icmpType = d[0]
				case (typ == ctaProtoICMPCode || typ == ctaProtoICMP6Cod) && len(d) >= 1:
					t.icmpCode = d[0]
				}
			})
		}
	})
	return t
}

func parseCounters(b []byte) (packets, bytes uint64) {
	attrs(b, func(typ uint16, d []byte) {
		if len(d) != 8 {
			return
		}
		switch typ {
		case ctaCountersPackets:
			packets = binary.BigEndian.Uint64(d)
		case ctaCountersBytes:
			bytes = binary.BigEndian.Uint64(d)
		}
	})
	return packets, bytes
}

// parseCTMessages parses the conntrack events in one datagram.
func parseCTMessages(b []byte, fn func(*ctEvent)) {
	for len(b) >= unix.SizeofNlMsghdr {
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		typ := binary.NativeEndian.Uint16(b[4:6])
		if n < unix.SizeofNlMsghdr || n > len(b) {
			return
		}
		msg := b[unix.SizeofNlMsghdr:n]
		if typ>>8 == unix.NFNL_SUBSYS_CTNETLINK && len(msg) >= 4 {
			ev := ctEvent{}
			switch typ & 0xff {
			case ctMsgNew:
			case ctMsgDelete:
				ev.destroy = true
			default:
				goto next
			}
			attrs(msg[4:], func(typ uint16, d []byte) {
				switch typ {
				case ctaTupleOrig:
					ev.orig = parseTuple(d)
				case ctaTupleReply:
					ev.reply = parseTuple(d)
				case ctaCountersOrig:
					ev.origPackets, ev.origBytes = parseCounters(d)
				case ctaCountersReply:
					ev.replyPackets, ev.replyBytes = parseCounters(d)
				case ctaID:
					if len(d) == 4 {
						ev.id = binary.BigEndian.Uint32(d)
					}
				}
			})
			if ev.orig.src.IsValid() && ev.reply.src.IsValid() {
				fn(&ev)
			}
		}
	next:
		n = (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if n > len(b) {
			return
		}
		b = b[n:]
	}
}

// listenCT reads NEW and DESTROY events until ctx ends.
func listenCT(ctx context.Context, fn func(*ctEvent)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("conntrack events: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("conntrack events: bind: %w", err)
	}
	for _, g := range []int{nfnlGroupCTNew, nfnlGroupCTDestroy} {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
			return fmt.Errorf("conntrack events: join group %d: %w", g, err)
		}
	}
	// A deep queue: events come in bursts; lost ones are only lost records.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	// Wake up to see ctx end.
	tv := unix.NsecToTimeval((250 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("conntrack events: receive timeout: %w", err)
	}
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		switch {
		case err == nil:
			parseCTMessages(buf[:n], fn)
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR), errors.Is(err, unix.ENOBUFS):
			// timeout, signal, or events lost to a full queue
		default:
			return fmt.Errorf("conntrack events: receive: %w", err)
		}
	}
	return nil
}
