package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
	"github.com/tabbynet/tabby/internal/ipam"
)

// ipamCluster is a real embedded etcd with two pools, two nodes and three
// addresses: web (endpoint w1), a tunnel address, and leaked (no endpoint).
type ipamCluster struct {
	url   string
	store datastore.Store
	m     *ipam.IPAM
	web   ipam.Allocation
	leak  ipam.Allocation
	tun   ipam.Allocation
}

func newIPAMCluster(t *testing.T) *ipamCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs an embedded etcd")
	}
	_, cfg := etcdtest.NewServer(t)
	s, err := etcd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	c := datastore.NewClient(s)
	for _, r := range []api.Resource{
		&api.IPPool{ObjectMeta: api.ObjectMeta{Name: "pool4"}, Spec: api.IPPoolSpec{CIDR: "10.0.0.0/16"}},
		&api.IPPool{ObjectMeta: api.ObjectMeta{Name: "pool6"}, Spec: api.IPPoolSpec{CIDR: "fd00:1::/112"}},
		&api.Node{ObjectMeta: api.ObjectMeta{Name: "node-a"}},
		&api.Node{ObjectMeta: api.ObjectMeta{Name: "node-b"}},
	} {
		if _, err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// Allocations made "an hour ago", so that check calls the leak a leak.
	old := time.Now().Add(-time.Hour)
	m := ipam.New(s, etcdtest.Logger(t))
	allocate := func(req ipam.Request) ipam.Allocation {
		t.Helper()
		req.Attrs.Timestamp = old
		as, err := m.Allocate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return as[0]
	}
	cl := &ipamCluster{url: cfg.Endpoints[0], store: s, m: m}
	cl.web = allocate(ipam.Request{Handle: "net.web.eth0", Node: "node-a", IPv4: 1, Attrs: ipam.Attributes{Workload: "web", Namespace: "default"}})
	cl.tun = allocate(ipam.Request{Handle: ipam.VXLANTunnelHandlePrefix + "node-b", Node: "node-b", IPv4: 1, Use: api.AllowedUseTunnel})
	cl.leak = allocate(ipam.Request{Handle: "net.gone.eth0", Node: "node-a", IPv4: 1})
	w := &api.WorkloadEndpoint{
		ObjectMeta: api.ObjectMeta{Name: "w1", Namespace: "default"},
		Spec: api.WorkloadEndpointSpec{Node: "node-a", Orchestrator: "cni", Endpoint: "eth0", InterfaceName: "tby0123456789a", ContainerID: "web",
			IPAMHandle: "net.web.eth0", IPNetworks: []string{netip.PrefixFrom(cl.web.Addr, 32).String()}},
	}
	if _, err := c.Create(ctx, w); err != nil {
		t.Fatal(err)
	}
	return cl
}

// run runs the CLI as a user would, and returns its exit code and output.
func (cl *ipamCluster) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"--datastore", cl.url}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestIPAMShow(t *testing.T) {
	cl := newIPAMCluster(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := runIPAMShow(ctx, cl.m, &out, ipamShowOptions{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"GROUPING", "CIDR", "IPS", "TOTAL", "IPS", "IN", "USE", "IPS", "RESERVED", "IPS", "FREE"},
		{"IP", "Pool", "10.0.0.0/16", "65536", "3", "(0%)", "0", "(0%)", "65533", "(100%)"},
		{"IP", "Pool", "fd00:1::/112", "65536", "0", "(0%)", "0", "(0%)", "65536", "(100%)"},
	}
	if len(lines) != len(want) {
		t.Fatalf("show printed:\n%s", out.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d = %q, want %q", i, got, w)
		}
	}

	out.Reset()
	if err := runIPAMShow(ctx, cl.m, &out, ipamShowOptions{blocks: true}); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	wantRows := []string{
		"GROUPING CIDR IPS TOTAL IPS IN USE IPS RESERVED IPS FREE NODE",
		"IP Pool 10.0.0.0/16 65536 3 (0%) 0 (0%) 65533 (100%)",
		"Block " + cl.web.Block.String() + " 64 2 (3%) 0 (0%) 62 (97%) node-a",
		"Block " + cl.tun.Block.String() + " 64 1 (2%) 0 (0%) 63 (98%) node-b",
		"IP Pool fd00:1::/112 65536 0 (0%) 0 (0%) 65536 (100%)",
	}
	if cl.tun.Block.Addr().Less(cl.web.Block.Addr()) {
		wantRows[2], wantRows[3] = wantRows[3], wantRows[2]
	}
	if strings.Join(rows, "\n") != strings.Join(wantRows, "\n") {
		t.Errorf("show --blocks printed:\n%s\nwant (modulo spacing):\n%s", out.String(), strings.Join(wantRows, "\n"))
	}

	code, stdout, stderr := cl.run(t, "ipam", "show", "--ip", cl.web.Addr.String())
	for _, w := range []string{"IP " + cl.web.Addr.String() + " is in use", "handle:    net.web.eth0", "workload:  web", "node:      node-a", "endpoints: default/w1", "pool:      pool4 (10.0.0.0/16)", "live:      true"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("show --ip lacks %q:\n%s", w, stdout)
		}
	}
	if code != 0 {
		t.Errorf("show --ip exit %d, stderr %s", code, stderr)
	}
	if _, stdout, _ := cl.run(t, "ipam", "show", "--ip", "10.0.200.1"); !strings.Contains(stdout, "IP 10.0.200.1 is not assigned") {
		t.Errorf("free address: %s", stdout)
	}
	if _, stdout, _ := cl.run(t, "ipam", "show", "--ip", "192.0.2.1"); !strings.Contains(stdout, "not in any IP pool") {
		t.Errorf("address outside pools: %s", stdout)
	}
	if code, _, stderr := cl.run(t, "ipam", "show", "--ip", "nonsense"); code != 2 || !strings.Contains(stderr, `--ip: "nonsense" is not an IPv4 or IPv6 address`) {
		t.Errorf("bad --ip: exit %d, %s", code, stderr)
	}
}

func TestIPAMCheckAndRelease(t *testing.T) {
	cl := newIPAMCluster(t)
	ctx := context.Background()

	var out bytes.Buffer
	err := runIPAMCheck(ctx, cl.m, &out)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("check with a leak: %v; want exit 1\n%s", err, out.String())
	}
	for _, w := range []string{"leaked", cl.leak.Addr.String(), "net.gone.eth0", "Found 1 problem(s)"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("check output lacks %q:\n%s", w, out.String())
		}
	}
	if code, _, _ := cl.run(t, "ipam", "check"); code != 1 {
		t.Errorf("tabby ipam check exit %d, want 1", code)
	}

	// Refused: a live endpoint holds it; and the tunnel address of a live node.
	for _, a := range []netip.Addr{cl.web.Addr, cl.tun.Addr} {
		code, _, stderr := cl.run(t, "ipam", "release", "--ip", a.String())
		if code != 1 || !strings.Contains(stderr, "pass --force") {
			t.Errorf("release of live %s: exit %d, %s", a, code, stderr)
		}
		if info, _ := cl.m.Lookup(ctx, a); !info.Allocated {
			t.Errorf("a refused release freed %s", a)
		}
	}
	code, stdout, stderr := cl.run(t, "ipam", "release", "--ip", cl.leak.Addr.String())
	if code != 0 || !strings.Contains(stdout, "Released "+cl.leak.Addr.String()) {
		t.Fatalf("release of the leak: exit %d, %s %s", code, stdout, stderr)
	}
	if code, _, stderr := cl.run(t, "ipam", "release", "--ip", cl.leak.Addr.String()); code != 1 || !strings.Contains(stderr, "is not allocated") {
		t.Errorf("second release: exit %d, %s", code, stderr)
	}
	if code, _, stderr := cl.run(t, "ipam", "release"); code != 2 || !strings.Contains(stderr, "--ip (or --from-report) is required") {
		t.Errorf("release without --ip: exit %d, %s", code, stderr)
	}
	code, stdout, _ = cl.run(t, "ipam", "check")
	if code != 0 || !strings.Contains(stdout, "No problems found.") {
		t.Errorf("check after release: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = cl.run(t, "ipam", "release", "--ip", cl.web.Addr.String(), "--force")
	if code != 0 || !strings.Contains(stdout, "Released") {
		t.Errorf("forced release: exit %d, %s %s", code, stdout, stderr)
	}
	// The endpoint now uses an address IPAM has free: check says so.
	code, stdout, _ = cl.run(t, "ipam", "check")
	if code != 1 || !strings.Contains(stdout, "endpoint-address-free") {
		t.Errorf("check after a forced release: exit %d\n%s", code, stdout)
	}
}

// TestIPAMShowCountsReserved: reserved free addresses get their own
// column; a reserved address already in use stays counted as in use.
func TestIPAMShowCountsReserved(t *testing.T) {
	cl := newIPAMCluster(t)
	res := &api.IPReservation{ObjectMeta: api.ObjectMeta{Name: "r"},
		Spec: api.IPReservationSpec{ReservedCIDRs: []string{cl.web.Addr.String(), "10.0.255.255"}}}
	if _, err := datastore.NewClient(cl.store).Create(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runIPAMShow(context.Background(), cl.m, &out, ipamShowOptions{}); err != nil {
		t.Fatal(err)
	}
	row := strings.Join(strings.Fields(strings.Split(out.String(), "\n")[1]), " ")
	if want := "IP Pool 10.0.0.0/16 65536 3 (0%) 1 (0%) 65532 (100%)"; row != want {
		t.Fatalf("pool row %q, want %q", row, want)
	}
}

// TestIPAMReleaseFromReport: check writes a report; by the time release
// runs, one reported leak has been released and its address given to a
// new container. release --from-report frees the leak that is still one
// and leaves the reused address alone.
func TestIPAMReleaseFromReport(t *testing.T) {
	cl := newIPAMCluster(t)
	ctx := context.Background()
	leak2, err := cl.m.Allocate(ctx, ipam.Request{Handle: "net.gone2.eth0", Node: "node-a", IPv4: 1,
		Attrs: ipam.Attributes{Timestamp: time.Now().Add(-time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "report.json")
	code, stdout, stderr := cl.run(t, "ipam", "check", "--show-problem-ips", "-o", report)
	if code != 1 || !strings.Contains(stdout, "Report written to "+report) {
		t.Fatalf("check -o: exit %d\n%s%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"kind": "leaked"`, `"address": "` + cl.leak.Addr.String() + `"`, `"address": "` + leak2[0].Addr.String() + `"`, `"sequence"`} {
		if !strings.Contains(string(b), w) {
			t.Fatalf("report lacks %s:\n%s", w, b)
		}
	}

	// Meanwhile leak2 is released and its address goes to a new container.
	reused := leak2[0].Addr
	if ok, err := cl.m.ReleaseAllocation(ctx, reused, "net.gone2.eth0", leak2[0].Seq); err != nil || !ok {
		t.Fatalf("release leak2: %v %v", ok, err)
	}
	if _, err := cl.m.Allocate(ctx, ipam.Request{Handle: "net.new.eth0", Node: "node-a", Static: []netip.Addr{reused}}); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr = cl.run(t, "ipam", "release", "--from-report", report)
	if code != 0 {
		t.Fatalf("release --from-report: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, w := range []string{"Released " + cl.leak.Addr.String(), "Skipped " + reused.String() + ": it was reallocated since the report", "Released 1 address(es), skipped 1"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("release output lacks %q:\n%s", w, stdout)
		}
	}
	if info, _ := cl.m.Lookup(ctx, reused); !info.Allocated || info.Handle != "net.new.eth0" {
		t.Fatalf("the reused address %s: allocated %v to %q; want it left with net.new.eth0", reused, info.Allocated, info.Handle)
	}
	if info, _ := cl.m.Lookup(ctx, cl.leak.Addr); info.Allocated {
		t.Fatalf("the leak %s is still allocated", cl.leak.Addr)
	}
	if info, _ := cl.m.Lookup(ctx, cl.web.Addr); !info.Allocated {
		t.Fatal("the live endpoint's address was released")
	}

	bad := writeFile(t, "bad.json", `{"version": 1, "problems": [{"kind": "leaked", "address": "10.0.0.300", "sequence": 1}]}`)
	if code, _, stderr := cl.run(t, "ipam", "release", "--from-report", bad); code != 1 || !strings.Contains(stderr, `problems[0].address: "10.0.0.300"`) {
		t.Fatalf("bad report: exit %d %s", code, stderr)
	}
}

// TestIPAMConfigure sets strict affinity and the block limit with the CLI
// and checks that the allocator honours both.
func TestIPAMConfigure(t *testing.T) {
	c := newCLI(t)
	c.stdin = "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.70.0.0/28, blockSize: 30}\n"
	c.ok("apply", "-f", "-")
	store, err := etcd.New(etcd.Config{Endpoints: []string{c.ds}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ctx := context.Background()
	m := ipam.New(store, etcdtest.Logger(t))
	allocate := func(handle, node string) error {
		_, err := m.Allocate(ctx, ipam.Request{Handle: handle, Node: node, IPv4: 1})
		return err
	}

	if out := c.ok("ipam", "show", "--show-configuration"); !strings.Contains(out, "StrictAffinity:     false") {
		t.Fatalf("default configuration: %s", out)
	}
	out := c.ok("ipam", "configure", "--max-blocks-per-host=1")
	if !strings.Contains(out, "MaxBlocksPerHost:   1") {
		t.Fatalf("configure output: %s", out)
	}
	for i := range 4 { // one /30 block: four addresses
		if err := allocate(fmt.Sprintf("a%d", i), "node-a"); err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
	}
	// node-b may claim its one block; node-a may not claim a second, and
	// (not strict) borrows from node-b's block.
	if err := allocate("b0", "node-b"); err != nil {
		t.Fatal(err)
	}
	if err := allocate("a4", "node-a"); err != nil {
		t.Fatalf("borrowing without strict affinity: %v", err)
	}
	c.ok("ipam", "configure", "--strictaffinity=true")
	err = allocate("a5", "node-a")
	if !errors.Is(err, ipam.ErrExhausted) || !strings.Contains(err.Error(), "maxBlocksPerHost") || !strings.Contains(err.Error(), "strictAffinity is on") {
		t.Fatalf("allocation beyond the limit with strict affinity: %v", err)
	}
	if out := c.ok("get", "ipamconfig", "default", "-o", "yaml"); !strings.Contains(out, "strictAffinity: true") || !strings.Contains(out, "maxBlocksPerHost: 1") {
		t.Fatalf("stored configuration:\n%s", out)
	}
	c.ok("ipam", "configure", "--strictaffinity=false", "--dry-run")
	if out := c.ok("ipam", "show", "--show-configuration"); !strings.Contains(out, "StrictAffinity:     true") {
		t.Fatalf("--dry-run wrote: %s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ipam", "configure"}, "give --strictaffinity"},
		{[]string{"ipam", "configure", "--strictaffinity=maybe"}, `--strictaffinity: "maybe" is not true or false`},
		{[]string{"ipam", "configure", "--max-blocks-per-host=-1"}, "negative"},
	} {
		if code, _, errs := c.run(tc.args...); code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d %q", tc.args, code, errs)
		}
	}
}
