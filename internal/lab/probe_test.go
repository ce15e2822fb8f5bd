package lab

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/testenv"
)

func TestProbeSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spec   ProbeSpec
		errHas string // "" = valid
	}{
		{name: "defaults", spec: ProbeSpec{}},
		{name: "udp", spec: ProbeSpec{Protocol: "UDP", Port: 53}},
		{name: "icmp", spec: ProbeSpec{Protocol: "icmp"}},
		{name: "unknown protocol", spec: ProbeSpec{Protocol: "sctp"}, errHas: `protocol "sctp"`},
		{name: "port too big", spec: ProbeSpec{Port: 70000}, errHas: "port 70000"},
		{name: "negative port", spec: ProbeSpec{Port: -1}, errHas: "port -1"},
		{name: "icmp with a port", spec: ProbeSpec{Protocol: "icmp", Port: 80}, errHas: "icmp has no ports"},
		{name: "negative timeout", spec: ProbeSpec{Timeout: -time.Second}, errHas: "timeout -1s"},
		{name: "negative concurrency", spec: ProbeSpec{Concurrency: -2}, errHas: "concurrency -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.WithDefaults().Validate()
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatalf("Validate: got %v, want no error", err)
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("Validate: got %v, want an error containing %q", err, tc.errHas)
			}
		})
	}
	if got := (ProbeSpec{}).WithDefaults(); got.Protocol != ProbeTCP || got.Port != 80 || got.Timeout != DefaultProbeTimeout || got.Concurrency != DefaultProbeConcurrency {
		t.Errorf("defaults: got %+v, want tcp/80 with the default timeout and concurrency", got)
	}
}

func TestReachabilityTable(t *testing.T) {
	r := &Reachability{
		Protocol: ProbeTCP, Port: 81,
		From: []string{"a", "bb"}, To: []string{"a", "bb"},
		Results: []PairResult{
			{From: "a", To: "bb", Allowed: true, Detail: "connected"},
			{From: "bb", To: "a", Error: "probe: no route"},
		},
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := `tcp/81: 1 allowed, 0 denied, 1 not probed (rows: from, columns: to; . allowed, X denied, ? not probed)
-  a bb
a  - .
bb ? -
bb -> a: probe: no route
`
	if b.String() != want {
		t.Errorf("table:\ngot:\n%s\nwant:\n%s", b.String(), want)
	}
	r.Results[1] = PairResult{From: "bb", To: "a", Detail: "timeout"}
	if a, d, f := r.Counts(); a != 1 || d != 1 || f != 0 {
		t.Errorf("counts: got %d allowed, %d denied, %d failed, want 1, 1, 0", a, d, f)
	}
	if got := r.Cell("bb", "a"); got != "X" {
		t.Errorf("cell bb->a: got %q, want X", got)
	}
	if got := (&Reachability{Protocol: ProbeICMP}).Title(); got != "icmp" {
		t.Errorf("title: got %q, want icmp", got)
	}
}

// TestProbeOnceLoopback probes services on loopback in the test's own
// namespace: connected, refused, echoed, a bound source, bad input.
func TestProbeOnceLoopback(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tcp, err := ListenProbe("", ProbeTCP, netip.AddrPortFrom(lo, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := ListenProbe("", ProbeUDP, netip.AddrPortFrom(lo, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	// A port nothing listens on: bind one and close it.
	free := func(network string) netip.AddrPort {
		t.Helper()
		if network == "udp" {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			return c.LocalAddr().(*net.UDPAddr).AddrPort()
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).AddrPort()
	}
	closedTCP, closedUDP := free("tcp"), free("udp")
	for _, tc := range []struct {
		name        string
		target      ProbeTarget
		allowed     bool
		detail      string
		errHas      string
		needsRawSoc bool
	}{
		{name: "tcp connected", target: ProbeTarget{Protocol: ProbeTCP, Dst: tcp.Addr()}, allowed: true, detail: "connected"},
		{name: "tcp from a bound source", target: ProbeTarget{Protocol: ProbeTCP, Src: netip.MustParseAddr("127.0.0.2"), Dst: tcp.Addr()}, allowed: true, detail: "connected"},
		{name: "tcp refused", target: ProbeTarget{Protocol: ProbeTCP, Dst: closedTCP}, allowed: true, detail: "refused"},
		{name: "udp echoed", target: ProbeTarget{Protocol: ProbeUDP, Dst: udp.Addr()}, allowed: true, detail: "reply"},
		{name: "udp refused", target: ProbeTarget{Protocol: ProbeUDP, Dst: closedUDP}, allowed: true, detail: "refused"},
		{name: "icmp echo", target: ProbeTarget{Protocol: ProbeICMP, Dst: netip.AddrPortFrom(lo, 0)}, allowed: true, detail: "reply", needsRawSoc: true},
		{name: "unknown protocol", target: ProbeTarget{Protocol: "sctp", Dst: tcp.Addr()}, errHas: `protocol "sctp"`},
		{name: "no destination", target: ProbeTarget{Protocol: ProbeTCP}, errHas: "no destination"},
		{name: "mixed families", target: ProbeTarget{Protocol: ProbeTCP, Src: netip.MustParseAddr("::1"), Dst: tcp.Addr()}, errHas: "different families"},
		{name: "source not local", target: ProbeTarget{Protocol: ProbeUDP, Src: netip.MustParseAddr("192.0.2.1"), Dst: udp.Addr()}, errHas: "bind to 192.0.2.1"},
		{name: "no such namespace", target: ProbeTarget{NS: "tabby-probe-test-none", Protocol: ProbeTCP, Dst: tcp.Addr()}, errHas: "tabby-probe-test-none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needsRawSoc {
				testenv.NeedRoot(t) // ICMP probes open a raw socket
			}
			tc.target.Timeout = 2 * time.Second
			o := ProbeOnce(context.Background(), tc.target)
			if tc.errHas != "" {
				if o.Err == nil || !strings.Contains(o.Err.Error(), tc.errHas) {
					t.Fatalf("got %+v, want an error containing %q", o, tc.errHas)
				}
				return
			}
			if o.Err != nil || o.Allowed != tc.allowed || o.Detail != tc.detail {
				t.Fatalf("got allowed=%v detail=%q err=%v, want allowed=%v detail=%q", o.Allowed, o.Detail, o.Err, tc.allowed, tc.detail)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		o := ProbeOnce(ctx, ProbeTarget{Protocol: ProbeUDP, Dst: closedUDP, Timeout: time.Second})
		if o.Allowed {
			t.Fatalf("got %+v from a cancelled probe, want no verdict", o)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan string, 200)
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := ProbeTarget{Protocol: ProbeTCP, Dst: tcp.Addr(), Timeout: 5 * time.Second}
				if i%2 == 1 {
					p.Protocol, p.Dst = ProbeUDP, udp.Addr()
				}
				if o := ProbeOnce(context.Background(), p); !o.Allowed || o.Err != nil {
					errs <- p.Protocol + ": " + o.Detail + " " + errOrNil(o.Err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestListenProbeErrors(t *testing.T) {
	if _, err := ListenProbe("", "icmp", netip.MustParseAddrPort("127.0.0.1:0")); err == nil || !strings.Contains(err.Error(), `protocol "icmp"`) {
		t.Errorf("icmp listener: got %v, want an error naming the protocol", err)
	}
	l, err := ListenProbe("", ProbeTCP, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := ListenProbe("", ProbeTCP, l.Addr()); err == nil || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("second listener on %s: got %v, want an error naming the address", l.Addr(), err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// FuzzICMPReply feeds arbitrary packets to the echo-reply matcher (what a
// raw socket hands the probe): it never panics, and accepts only a reply
// with our identifier.
func FuzzICMPReply(f *testing.F) {
	req := icmpRequest(8, 0x1234)(1)
	f.Add(append([]byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1}, append([]byte{0, 0}, req[2:]...)...), true)
	f.Add([]byte{0x4f}, true)
	f.Add([]byte{129, 0, 0, 0, 0x12, 0x34, 0, 1}, false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, pkt []byte, v4 bool) {
		typ := byte(129)
		if v4 {
			typ = 0
		}
		ok := icmpReply(typ, 0x1234, v4)(pkt)
		if !ok {
			return
		}
		body := pkt
		if v4 {
			body = pkt[int(pkt[0]&0x0f)*4:]
		}
		if body[0] != typ || body[4] != 0x12 || body[5] != 0x34 {
			t.Fatalf("accepted %x", pkt)
		}
	})
}
