package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// TestPrivilegedCrashedContainerReleased: a container killed without CNI
// DEL (processes killed, namespace deleted) has its endpoint and address
// gone within 10 s on the live agent, and the other host's policy sets no
// longer hold its address; its address is handed out again only after
// that; two other containers' ping and TCP (across hosts) never notice;
// the late DEL (lab rm) succeeds.
func TestPrivilegedCrashedContainerReleased(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("cr"), Nodes: 2})
	ctx := context.Background()
	for _, n := range []struct{ name, node string }{{"a", "h1"}, {"b", "h2"}, {"dead", "h1"}} {
		if _, err := l.Run(ctx, RunSpec{Name: n.name, Node: n.node, Command: []string{"sleep", "infinity"}}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := l.Container("a")
	b, _ := l.Container("b")
	dead, _ := l.Container("dead")
	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client, m := datastore.NewClient(s), ipam.New(s, nil)

	// a reaches b (the route to h2's new block is learned over BGP first).
	for reachDeadline := time.Now().Add(60 * time.Second); ; {
		cmd, err := l.ContainerCommand(ctx, "a", []string{"ping", "-n", "-c", "1", "-W", "1", b.IP().String()})
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Run() == nil {
			break
		}
		if time.Now().After(reachDeadline) {
			t.Fatalf("a does not reach b (%s) before the crash", b.IP())
		}
	}
	// a pings b all along (75 × 0.2 s: well past the 10 s bound).
	ping, err := l.ContainerCommand(ctx, "a", []string{"ping", "-n", "-q", "-i", "0.2", "-c", "75", b.IP().String()})
	if err != nil {
		t.Fatal(err)
	}
	pingDone := make(chan []byte, 1)
	go func() { out, _ := ping.CombinedOutput(); pingDone <- out }()
	t.Cleanup(func() {
		if ping.Process != nil {
			_ = ping.Process.Kill()
		}
	})

	deadIP := dead.IP()
	reuse := ipam.Request{Handle: "labtest.reuse.eth0", Node: "h1", Static: []netip.Addr{deadIP}}
	if _, err := m.Allocate(ctx, reuse); err == nil {
		t.Fatalf("%s was handed out again while its container lives", deadIP)
	}
	inSets := func() bool {
		t.Helper()
		cmd, err := l.NodeCommand(ctx, "h2", []string{"nft", "list", "ruleset"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nft list ruleset on h2: %v\n%s", err, out)
		}
		return strings.Contains(string(out), deadIP.String())
	}
	if !inSets() {
		t.Fatalf("h2's policy does not hold %s before the crash: the test cannot see it go", deadIP)
	}
	start := time.Now()
	if err := l.Crash(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	deadline := start.Add(10 * time.Second)
	for {
		if err := TCPEcho(&a, &b); err != nil {
			t.Fatalf("a → b over TCP while the dead container goes: %v", err)
		}
		_, allocErr := m.Allocate(ctx, reuse)
		present, err := endpointOf(ctx, client, dead.ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		if allocErr == nil {
			// Handed out again: the endpoint must have gone first.
			if present {
				t.Fatalf("%s was handed out again while the dead container's endpoint still lists it", deadIP)
			}
			t.Logf("endpoint and address released %v after the crash", time.Since(start).Round(10*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the crash: endpoint present %v, %s not yet free (%v)", present, deadIP, allocErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for inSets() {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the crash, h2's policy sets still hold %s", deadIP)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := m.ReleaseHandle(ctx, reuse.Handle); err != nil {
		t.Fatal(err)
	}

	out := <-pingDone
	sent, got, err := pingCounts(out)
	if err != nil || sent != 75 || got != sent {
		t.Fatalf("a → b ping during the crash: %d of %d answered (%v)\n%s", got, sent, err, out)
	}
	// The runtime's late DEL succeeds and nothing is left.
	if err := l.Remove(ctx, "dead", false); err != nil {
		t.Fatalf("late DEL: %v", err)
	}
	rep, err := m.Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("ipam check: %+v", rep.Problems)
	}
}

func endpointOf(ctx context.Context, client *datastore.Client, containerID string) (bool, error) {
	weps, _, err := client.List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		return false, err
	}
	for _, r := range weps {
		if r.(*api.WorkloadEndpoint).Spec.ContainerID == containerID {
			return true, nil
		}
	}
	return false, nil
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// pingCounts reads ping's summary line.
func pingCounts(out []byte) (sent, got int, err error) {
	mm := pingSummary.FindSubmatch(out)
	if mm == nil {
		return 0, 0, errors.New("no ping summary")
	}
	sent, _ = strconv.Atoi(string(mm[1]))
	got, _ = strconv.Atoi(string(mm[2]))
	if sent == 0 {
		return 0, 0, fmt.Errorf("no packet sent")
	}
	return sent, got, nil
}
