package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/agent/policy"
)

// dumpBufSize is the receive buffer of our dumps. The kernel sizes each
// dump batch after the largest recvmsg buffer it has seen on the socket
// (up to 32 KiB); google/nftables reads with a page, which makes the
// kernel walk a large set from its start for every 4 KiB of elements —
// 100,000 elements took seconds. With 64 KiB reads a batch is 32 KiB.
const dumpBufSize = 64 << 10

// elementDumper lists set elements over one netlink socket.
type elementDumper struct {
	c   *netlink.Conn
	buf []byte
}

func newElementDumper(netnsFD int) (*elementDumper, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, fmt.Errorf("dial netfilter netlink: %w", err)
	}
	_ = c.SetReadBuffer(4 << 20) // best effort: dumps continue when half of it is free
	return &elementDumper{c: c, buf: make([]byte, dumpBufSize)}, nil
}

func (d *elementDumper) Close() error { return d.c.Close() }

// elements lists the elements of a set or map of Tabby's table.
func (d *elementDumper) elements(set string, isMap bool) ([]token, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(policy.TableName + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(set + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	req, err := d.c.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, fmt.Errorf("request elements of set %s: %w", set, err)
	}
	raw, err := d.c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var out []token
	for {
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, _, _, rerr = unix.Recvmsg(int(fd), d.buf, nil, 0)
			return !errors.Is(rerr, syscall.EAGAIN)
		}); err != nil {
			return nil, err
		}
		if rerr != nil {
			return nil, fmt.Errorf("read elements of set %s: %w", set, rerr)
		}
		b := d.buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return nil, fmt.Errorf("read elements of set %s: malformed netlink message", set)
			}
			var m netlink.Message
			if err := m.UnmarshalBinary(b[:l]); err != nil {
				return nil, err
			}
			b = b[min(len(b), (l+3)&^3):]
			if m.Header.Sequence != req.Header.Sequence {
				continue // a stale answer
			}
			switch m.Header.Type {
			case netlink.Done:
				return out, nil
			case netlink.Error:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("elements of set %s: %w", set, syscall.Errno(-errno))
					}
				}
				return out, nil
			}
			toks, err := decodeElements(m.Data, isMap)
			if err != nil {
				return nil, fmt.Errorf("elements of set %s: %w", set, err)
			}
			out = append(out, toks...)
		}
	}
}

// decodeElements decodes one NEWSETELEM message (after the netlink header).
func decodeElements(data []byte, isMap bool) ([]token, error) {
	if len(data) < 4 {
		return nil, errors.New("short message")
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	var out []token
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != unix.NFTA_LIST_ELEM {
					continue
				}
				var t token
				t.verdict = isMap
				list.Nested(func(el *netlink.AttributeDecoder) error {
					el.ByteOrder = binary.BigEndian
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(k *netlink.AttributeDecoder) error {
								for k.Next() {
									if k.Type() == unix.NFTA_DATA_VALUE {
										t.key = string(k.Bytes())
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_FLAGS:
							t.end = el.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
						case unix.NFTA_SET_ELEM_DATA:
							el.Nested(func(dd *netlink.AttributeDecoder) error {
								for dd.Next() {
									if dd.Type() == unix.NFTA_DATA_VERDICT {
										code, chain, err := decodeVerdict(dd.Bytes())
										if err != nil {
											return err
										}
										t.vcode, t.chain = code, chain
									}
								}
								return nil
							})
						}
					}
					return nil
				})
				out = append(out, t)
			}
			return nil
		})
	}
	return out, ad.Err()
}
