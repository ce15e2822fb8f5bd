package dns

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/testenv"
)

// dig runs the real dig (Debian package dnsutils) against the server.
func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dig", append([]string{"@" + host, "-p", port, "+time=2", "+tries=2"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func shortLines(s string) []string {
	lines := strings.Fields(strings.TrimSpace(s))
	slices.Sort(lines)
	return lines
}

func TestDig(t *testing.T) {
	testenv.NeedTool(t, "dig")
	store := memstore.New()
	c := datastore.NewClient(store)
	mustCreate(t, c, testNode("agent-1", "10.0.1.11"))
	mustCreate(t, c, testEndpoint("shop", "web-1", "agent-1", "web", "172.29.1.20"))
	fm := newFakeMaster(t, readFixture(t))
	ts := startServer(t, store, func(cfg *Config) { cfg.Masters = []string{fm.URL} })

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"+short", "myapp-subgroup-outergroup.marathon.mesos", "A"}, []string{"172.29.1.5"}},
		{[]string{"+short", "+tcp", "myapp-subgroup-outergroup.marathon.mesos", "A"}, []string{"172.29.1.5"}},
		{[]string{"+short", "db.marathon.mesos", "AAAA"}, []string{"fd00:29::2:8"}},
		{[]string{"+short", "web.shop.mesos"}, []string{"172.29.1.20"}},
		{[]string{"+short", "-x", "172.29.1.20"}, []string{"web.shop.mesos."}},
		{[]string{"+short", "_myapp-subgroup-outergroup._tcp.marathon.mesos", "SRV"}, strings.Fields("0 1 80 " + myappCan)},
		{[]string{"+short", "myapp-subgroup-outergroup.marathon.autoip.dcos.thisdcos.directory"}, []string{"172.29.1.5"}},
	} {
		if diff := cmp.Diff(shortLines(strings.Join(tc.want, " ")), shortLines(dig(t, ts.dns, tc.args...))); diff != "" {
			t.Errorf("dig %v (-want +got):\n%s", tc.args, diff)
		}
	}
	if out := dig(t, ts.dns, "nope.marathon.mesos", "A"); !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "flags: qr aa") {
		t.Errorf("dig of an unknown name:\n%s", out)
	}
	if out := dig(t, ts.dns, "leader.mesos", "TXT"); !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "ANSWER: 0") || !strings.Contains(out, "AUTHORITY: 1") {
		t.Errorf("dig of a type the name lacks:\n%s", out)
	}
}
