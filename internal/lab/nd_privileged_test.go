package lab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/testenv"
)

// nsSeen sends an ICMPv6 neighbour solicitation (type 135, a random
// target so copies are told apart) from container from to to's IPv6
// address, as a unicast packet the host must forward, and reports whether
// a raw socket in to saw it within a second.
func nsSeen(t *testing.T, from, to *Container) bool {
	t.Helper()
	rx, err := socketIn(to.NetNS, unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := socketIn(from.NetNS, unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	var target [16]byte
	target[0], target[1] = 0xfd, 0x5e
	_, _ = rand.Read(target[2:])
	msg := append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, target[:]...) // the kernel fills in the checksum
	rc, err := tx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(time.Second)
	buf := make([]byte, 2048)
	for time.Now().Before(end) {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.Sendto(int(fd), msg, 0, sockaddr(netip.AddrPortFrom(to.IP6(), 0))) }); err != nil {
			t.Fatal(err)
		}
		if serr != nil && !errors.Is(serr, unix.EPERM) && !errors.Is(serr, unix.EHOSTUNREACH) {
			t.Fatalf("send a neighbour solicitation from %s: %v", from.Name, serr)
		}
		_ = rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, err := rx.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatalf("read in %s: %v", to.Name, err)
			}
			if n >= 24 && buf[0] == 135 && [16]byte(buf[8:24]) == target {
				return true
			}
		}
	}
	return false
}

// TestPrivilegedIPv6NeighbourDiscovery: neighbour discovery is allowed
// only where it must be. A container whose policy denies everything, both
// ways, still resolves its gateway (the host side's link-local address):
// ND to its host passes before policy, as in Calico, so no policy cuts a
// workload off its router. Forwarded ICMPv6 of the ND types is policed
// like any other packet: a neighbour solicitation sent to the locked
// container's address, or by it to another's, is dropped, while the same
// packet between two open containers arrives.
func TestPrivilegedIPv6NeighbourDiscovery(t *testing.T) {
	requireRoot(t)
	testenv.NeedTool(t, "ping")
	l := upLab(t, Config{Name: uniqueName("nd"), Nodes: 2, IPFamily: Dual})
	ctx := context.Background()
	run := func(name, node string, labels ...KeyValue) *Container {
		t.Helper()
		c, err := l.Run(ctx, RunSpec{Name: name, Node: node, Labels: labels, Command: []string{"sleep", "infinity"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	locked := run("locked", "h1", KeyValue{"role", "locked"})
	open := run("open", "h1")
	far := run("far", "h2")
	for _, p := range [][2]*Container{{open, locked}, {locked, far}, {open, far}} {
		eventually(t, "ping -6 "+p[0].Name+" → "+p[1].Name+" before the policy", func() error { return ping6(t, l, p[0].Name, p[1].IP6()) })
	}
	for _, p := range [][2]*Container{{open, locked}, {locked, far}, {open, far}} {
		if !nsSeen(t, p[0], p[1]) {
			t.Fatalf("before the policy: a neighbour solicitation %s → %s did not arrive; the check cannot see ND", p[0].Name, p[1].Name)
		}
	}

	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	order := 1.0
	lock := &api.GlobalNetworkPolicy{
		ObjectMeta: api.ObjectMeta{Name: "lock"},
		Spec:       api.GlobalNetworkPolicySpec{Order: &order, Selector: "role == 'locked'", Types: []string{"Ingress", "Egress"}},
	}
	if _, err := datastore.NewClient(s).Create(ctx, lock); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ping -6 open → locked denied", func() error {
		if ping6(t, l, "open", locked.IP6()) == nil {
			return errors.New("still answered")
		}
		return nil
	})

	// The locked container forgets its gateway and resolves it again.
	gw := "fe80::ecee:eeff:feee:eeee"
	if out, err := cmdOut(t, l, "locked", "ip", "-6", "neigh", "flush", "dev", "eth0"); err != nil {
		t.Fatalf("ip -6 neigh flush: %v: %s", err, out)
	}
	eventually(t, "locked resolves its gateway "+gw, func() error {
		_ = ping6(t, l, "locked", far.IP6()) // denied by policy, but needs the gateway's MAC first
		out, err := cmdOut(t, l, "locked", "ip", "-6", "neigh", "show", gw, "dev", "eth0")
		if err != nil || !strings.Contains(out, "lladdr ee:ee:ee:ee:ee:ee") {
			return fmt.Errorf("neighbour entry %q (%v), want lladdr ee:ee:ee:ee:ee:ee", out, err)
		}
		return nil
	})

	for _, tc := range []struct {
		from, to *Container
		want     bool
	}{
		{open, locked, false}, // ingress policy of locked
		{locked, far, false},  // egress policy of locked
		{open, far, true},     // nothing denies it
	} {
		if got := nsSeen(t, tc.from, tc.to); got != tc.want {
			t.Errorf("forwarded neighbour solicitation %s → %s under the policy: arrived %v, want %v", tc.from.Name, tc.to.Name, got, tc.want)
		}
	}
}
