package endpoint

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/internal/netlinkdump"
)

// ioDeadline bounds every network exchange in these tests; it is a
// safety net, not a timing assertion.
const ioDeadline = 10 * time.Second

// serveEcho answers each line with "<client IP> <line>" until ln closes.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(ioDeadline))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s", host, line)
		}()
	}
}

// exchange dials addr from the calling thread's namespace (run it inside
// netns.Do) and returns the echo server's answer.
func exchange(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, ioDeadline)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioDeadline))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// ping sends one ICMP echo request from src to dst and waits for the reply;
// run it inside netns.Do.
func ping(src, dst netip.Addr) error {
	c, err := net.ListenPacket("ip4:icmp", src.String())
	if err != nil {
		return err
	}
	defer c.Close()
	id := uint16(os.Getpid())
	msg := []byte{8, 0, 0, 0, 0, 0, 0, 1, 't', 'a', 'b', 'b', 'y'}
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
	c.SetDeadline(time.Now().Add(ioDeadline))
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no echo reply from %s: %w", dst, err)
		}
		if from.String() == dst.String() && n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
			return nil
		}
	}
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// TestPrivilegedTraffic wires two dual-stack containers on one host and
// sends real traffic between them through the host's routes.
func TestPrivilegedTraffic(t *testing.T) {
	RequireRoot(t)
	ctx := context.Background()
	host := NewTestHost(t)
	nsA, nsB := NewTestNetNS(t, "tbyt-ca-"), NewTestNetNS(t, "tbyt-cb-")
	dp := HostDP{New(testLogger(t)), host}
	a := Config{ContainerID: "a", IfName: "eth0", NetNS: nsA, Addrs: pfxs("10.65.0.1/26", "fd00:65::1/128")}
	b := Config{ContainerID: "b", IfName: "eth0", NetNS: nsB, Addrs: pfxs("10.65.0.2/26", "fd00:65::2/128")}
	for _, c := range []Config{a, b} {
		if _, err := dp.Add(ctx, c); err != nil {
			t.Fatalf("Add %s: %v", c.ContainerID, err)
		}
	}

	var ln4, ln6 net.Listener
	InNS(t, nsB, func() error {
		var err error
		if ln4, err = net.Listen("tcp4", "10.65.0.2:0"); err != nil {
			return err
		}
		ln6, err = net.Listen("tcp6", "[fd00:65::2]:0")
		return err
	})
	for _, ln := range []net.Listener{ln4, ln6} {
		t.Cleanup(func() { ln.Close() })
		go serveEcho(ln)
	}

	tests := []struct {
		name string
		from string // namespace
		to   net.Listener
		want string // the address the server sees
	}{
		{name: "ipv4 container to container", from: nsA, to: ln4, want: "10.65.0.1"},
		{name: "ipv6 container to container", from: nsA, to: ln6, want: "fd00:65::1"},
		{name: "ipv4 host to container", from: host, to: ln4, want: "192.0.2.10"},
		{name: "ipv6 host to container", from: host, to: ln6, want: "2001:db8:1::10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			InNS(t, tc.from, func() error {
				var err error
				got, err = exchange(tc.to.Addr().String(), "hello")
				return err
			})
			if want := tc.want + " hello"; got != want {
				t.Errorf("echo = %q, want %q", got, want)
			}
		})
	}

	t.Run("icmp echo", func(t *testing.T) {
		InNS(t, nsA, func() error {
			return ping(netip.MustParseAddr("10.65.0.1"), netip.MustParseAddr("10.65.0.2"))
		})
	})

	// Without the static entry, the container must resolve 169.254.1.1
	// by ARP, and the host answers by proxy ARP with ee:ee:ee:ee:ee:ee.
	t.Run("gateway resolution by proxy arp", func(t *testing.T) {
		InNS(t, nsA, func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			gw := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, IP: ipOf(GatewayIPv4)}
			if err := netlink.NeighDel(gw); err != nil {
				return fmt.Errorf("delete static gateway entry: %w", err)
			}
			if _, err := exchange(ln4.Addr().String(), "again"); err != nil {
				return fmt.Errorf("traffic after deleting the static entry: %w", err)
			}
			deadline := time.Now().Add(ioDeadline)
			for {
				ns, err := netlinkdump.Retry(func() ([]netlink.Neigh, error) { return netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4) })
				if err != nil {
					return err
				}
				for _, n := range ns {
					resolved := n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0
					if addrOf(n.IP) == GatewayIPv4 && resolved {
						if got := n.HardwareAddr.String(); got != HostMAC {
							return fmt.Errorf("169.254.1.1 resolved to %s, want %s", got, HostMAC)
						}
						return nil
					}
				}
				if time.Now().After(deadline) {
					return errors.New("169.254.1.1 never resolved")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	})
}
