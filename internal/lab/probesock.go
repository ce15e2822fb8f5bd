package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
)

// Probe protocols.
const (
	ProbeTCP  = "tcp"
	ProbeUDP  = "udp"
	ProbeICMP = "icmp"
)

// ProbeTarget is one probe: from network namespace NS (from address Src
// when set, which must be local there) to Dst. A TCP probe is one
// connection attempt; a UDP probe sends a datagram (again every third of
// the timeout) and waits for it to be echoed by a ProbeListener; an ICMP
// probe is an echo request (ping). Dst's port is ignored for ICMP.
type ProbeTarget struct {
	NS       string
	Protocol string
	Src      netip.Addr
	Dst      netip.AddrPort
	Timeout  time.Duration
}

// ProbeOutcome is what one probe saw. Allowed means the traffic reached
// the destination and the answer came back. A TCP reset ("refused") counts
// as allowed: it proves the SYN got through (policy drops, it never
// rejects). Err is set when the probe could not be made at all; then
// Allowed says nothing.
type ProbeOutcome struct {
	Allowed bool
	// Detail: connected, refused, echoed, reply, timeout, unreachable, …
	Detail string
	Err    error
	RTT    time.Duration
}

// ProbeOnce sends one probe and waits for its answer or the timeout.
func ProbeOnce(ctx context.Context, t ProbeTarget) ProbeOutcome {
	if t.Timeout <= 0 {
		t.Timeout = DefaultProbeTimeout
	}
	dst := netip.AddrPortFrom(t.Dst.Addr().Unmap(), t.Dst.Port())
	if !dst.Addr().IsValid() {
		return ProbeOutcome{Err: errors.New("probe: no destination address")}
	}
	if t.Src.IsValid() && t.Src.Unmap().Is4() != dst.Addr().Is4() {
		return ProbeOutcome{Err: fmt.Errorf("probe: source %s and destination %s are of different families", t.Src, dst.Addr())}
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	family := unix.AF_INET
	if dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	var typ, proto int
	switch t.Protocol {
	case ProbeTCP:
		typ = unix.SOCK_STREAM
	case ProbeUDP:
		typ = unix.SOCK_DGRAM
	case ProbeICMP:
		typ, proto = unix.SOCK_RAW, unix.IPPROTO_ICMP
		if family == unix.AF_INET6 {
			proto = unix.IPPROTO_ICMPV6
		}
	default:
		return ProbeOutcome{Err: fmt.Errorf("probe: protocol %q: want tcp, udp or icmp", t.Protocol)}
	}
	f, err := socketIn(t.NS, family, typ, proto)
	if err != nil {
		return ProbeOutcome{Err: err}
	}
	defer f.Close()
	// Cancelling the context interrupts whatever the probe waits for.
	stop := context.AfterFunc(ctx, func() { _ = f.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := f.SetDeadline(deadline); err != nil {
		return ProbeOutcome{Err: fmt.Errorf("probe: %w", err)}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return ProbeOutcome{Err: fmt.Errorf("probe: %w", err)}
	}
	if t.Src.IsValid() {
		var berr error
		if err := rc.Control(func(fd uintptr) {
			berr = unix.Bind(int(fd), sockaddr(netip.AddrPortFrom(t.Src.Unmap(), 0)))
		}); err != nil {
			berr = err
		}
		if berr != nil {
			return ProbeOutcome{Err: fmt.Errorf("probe: bind to %s in %s: %w", t.Src, t.NS, berr)}
		}
	}
	t0 := time.Now()
	var out ProbeOutcome
	switch t.Protocol {
	case ProbeTCP:
		out = probeTCP(rc, dst)
	case ProbeUDP:
		out = probeEcho(ctx, f, rc, dst, t.Timeout, udpPacket, udpReply)
	case ProbeICMP:
		id := uint16(randUint32())
		if family == unix.AF_INET6 {
			out = probeEcho(ctx, f, rc, netip.AddrPortFrom(dst.Addr(), 0), t.Timeout, icmpRequest(128, id), icmpReply(129, id, false))
		} else {
			out = probeEcho(ctx, f, rc, netip.AddrPortFrom(dst.Addr(), 0), t.Timeout, icmpRequest(8, id), icmpReply(0, id, true))
		}
	}
	if out.Err == nil && out.Detail == "timeout" && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		out.Err = ctx.Err()
	}
	out.RTT = time.Since(t0)
	return out
}

// DefaultProbeTimeout is how long a probe waits for an answer.
const DefaultProbeTimeout = 2 * time.Second

// socketIn opens a non-blocking socket inside namespace ns ("" for the
// caller's own): the socket stays in that namespace whatever thread uses
// it later, so only its creation enters the namespace.
func socketIn(ns string, family, typ, proto int) (*os.File, error) {
	var fd int
	open := func() error {
		var err error
		fd, err = unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		return err
	}
	var err error
	if ns == "" {
		err = open()
	} else {
		err = netns.Do(netns.Path(ns), open)
	}
	if err != nil {
		return nil, fmt.Errorf("probe: open a socket in %s: %w", ns, err)
	}
	// A non-blocking descriptor makes a pollable *os.File: deadlines work.
	return os.NewFile(uintptr(fd), "probe"), nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// probeTCP makes one non-blocking connect and waits for its outcome.
func probeTCP(rc syscall.RawConn, dst netip.AddrPort) ProbeOutcome {
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sockaddr(dst)) }); err != nil {
		return ProbeOutcome{Err: fmt.Errorf("probe: %w", err)}
	}
	if cerr == nil {
		return ProbeOutcome{Allowed: true, Detail: "connected"}
	}
	if !errors.Is(cerr, unix.EINPROGRESS) {
		return errnoOutcome(cerr)
	}
	var soErr error
	connected := false
	werr := rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			soErr = err
		case v != 0:
			soErr = unix.Errno(v)
		default:
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false // still connecting: wait until writable
			}
			connected = true
		}
		return true
	})
	switch {
	case connected:
		return ProbeOutcome{Allowed: true, Detail: "connected"}
	case soErr != nil:
		return errnoOutcome(soErr)
	case errors.Is(werr, os.ErrDeadlineExceeded):
		return ProbeOutcome{Detail: "timeout"}
	case werr != nil:
		return ProbeOutcome{Err: fmt.Errorf("probe: %w", werr)}
	}
	return ProbeOutcome{Detail: "timeout"}
}

// errnoOutcome reads a failed connect or receive.
func errnoOutcome(err error) ProbeOutcome {
	switch {
	case errors.Is(err, unix.ECONNREFUSED):
		return ProbeOutcome{Allowed: true, Detail: "refused"}
	case errors.Is(err, unix.ETIMEDOUT):
		return ProbeOutcome{Detail: "timeout"}
	case errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return ProbeOutcome{Detail: "unreachable (" + err.Error() + ")"}
	}
	return ProbeOutcome{Err: fmt.Errorf("probe: %w", err)}
}

// probeEcho connects a datagram (or raw) socket, sends request(seq)
// every third of the timeout and waits for a packet that isReply accepts,
// until the context ends.
func probeEcho(ctx context.Context, f *os.File, rc syscall.RawConn, dst netip.AddrPort, timeout time.Duration, request func(seq uint16) []byte, isReply func(pkt []byte) bool) ProbeOutcome {
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sockaddr(dst)) }); err != nil {
		return ProbeOutcome{Err: fmt.Errorf("probe: %w", err)}
	}
	if cerr != nil {
		return errnoOutcome(cerr)
	}
	end, _ := ctx.Deadline()
	resend := max(timeout/3, 50*time.Millisecond)
	buf := make([]byte, 2048)
	for seq := uint16(1); ctx.Err() == nil; seq++ {
		if _, err := f.Write(request(seq)); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if o := errnoOutcome(err); o.Err == nil {
				return o
			}
			return ProbeOutcome{Err: fmt.Errorf("probe: send: %w", err)}
		}
		next := time.Now().Add(resend)
		if next.After(end) {
			next = end
		}
		for ctx.Err() == nil && time.Now().Before(next) {
			_ = f.SetReadDeadline(next)
			n, err := f.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if o := errnoOutcome(err); o.Err == nil {
					return o
				}
				return ProbeOutcome{Err: fmt.Errorf("probe: receive: %w", err)}
			}
			if isReply(buf[:n]) {
				return ProbeOutcome{Allowed: true, Detail: "reply"}
			}
		}
	}
	return ProbeOutcome{Detail: "timeout"}
}

// udpToken tells our datagrams apart from anything else on the port.
var udpToken = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("tabby-probe %x", b)
}()

func udpPacket(seq uint16) []byte { return []byte(udpToken) }
func udpReply(pkt []byte) bool    { return string(pkt) == udpToken }

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// icmpRequest builds echo requests of type typ (8, or 128 for ICMPv6,
// whose checksum the kernel fills in on raw sockets).
func icmpRequest(typ byte, id uint16) func(seq uint16) []byte {
	return func(seq uint16) []byte {
		p := make([]byte, 8, 8+len("tabby-probe"))
		p[0] = typ
		binary.BigEndian.PutUint16(p[4:], id)
		binary.BigEndian.PutUint16(p[6:], seq)
		p = append(p, "tabby-probe"...)
		if typ == 8 {
			binary.BigEndian.PutUint16(p[2:], inetChecksum(p))
		}
		return p
	}
}

// icmpReply accepts an echo reply of type typ with our id; IPv4 raw
// sockets deliver the IP header too.
func icmpReply(typ byte, id uint16, ipHeader bool) func(pkt []byte) bool {
	return func(pkt []byte) bool {
		if ipHeader {
			if len(pkt) < 20 {
				return false
			}
			ihl := int(pkt[0]&0x0f) * 4
			if len(pkt) < ihl {
				return false
			}
			pkt = pkt[ihl:]
		}
		return len(pkt) >= 8 && pkt[0] == typ && pkt[1] == 0 && binary.BigEndian.Uint16(pkt[4:]) == id
	}
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// ProbeListener answers probes inside a namespace: it accepts TCP
// connections (and closes them at once) or echoes UDP datagrams back.
type ProbeListener struct {
	addr      net.Addr
	closeOnce sync.Once
	close     func() error
	wg        sync.WaitGroup
}

// ListenProbe starts a ProbeListener for protocol (tcp or udp) on addr
// inside namespace ns ("" for the caller's own). Close stops it.
func ListenProbe(ns, protocol string, addr netip.AddrPort) (*ProbeListener, error) {
	in := func(fn func() error) error {
		if ns == "" {
			return fn()
		}
		return netns.Do(netns.Path(ns), fn)
	}
	p := &ProbeListener{}
	switch protocol {
	case ProbeTCP:
		var ln net.Listener
		err := in(func() error {
			var err error
			ln, err = net.Listen("tcp", addr.String())
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("probe listener on %s/tcp in %s: %w", addr, ns, err)
		}
		p.close, p.addr = ln.Close, ln.Addr()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					if errors.Is(err, net.ErrClosed) {
						return
					}
					time.Sleep(10 * time.Millisecond) // say, EMFILE
					continue
				}
				c.Close()
			}
		}()
	case ProbeUDP:
		var pc net.PacketConn
		err := in(func() error {
			var err error
			pc, err = net.ListenPacket("udp", addr.String())
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("probe listener on %s/udp in %s: %w", addr, ns, err)
		}
		p.close, p.addr = pc.Close, pc.LocalAddr()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}()
	default:
		return nil, fmt.Errorf("probe listener: protocol %q: want tcp or udp", protocol)
	}
	return p, nil
}

// Addr is the address the listener is bound to (with the port chosen
// for port 0).
func (p *ProbeListener) Addr() netip.AddrPort {
	switch a := p.addr.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// Close stops the listener and waits for its goroutine.
func (p *ProbeListener) Close() error {
	var err error
	p.closeOnce.Do(func() {
		err = p.close()
		p.wg.Wait()
	})
	return err
}
