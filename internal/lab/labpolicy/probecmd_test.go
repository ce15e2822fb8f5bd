package labpolicy

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
)

// TestPrivilegedProbeCommand runs `tabby lab probe` as a user does: the
// table, -o json, --from/--to, udp and icmp, a container that serves the
// port itself, one whose udp port is taken, and bad input.
func TestPrivilegedProbeCommand(t *testing.T) {
	requirePrivileged(t)
	w := upWorld(t, lab.Config{Name: uniqueName("pc"), Nodes: 2})
	bin := filepath.Join(testBinaries(t), "tabby")
	w.run(
		lab.RunSpec{Name: "web", Node: "h1", Command: []string{bin, "lab", "http", "serve", "--listen", ":80"}},
		lab.RunSpec{Name: "db", Node: "h2", Labels: []lab.KeyValue{{Key: "app", Value: "db"}}},
		lab.RunSpec{Name: "cli", Node: "h2"},
	)
	// db admits only web.
	w.apply(`
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: db, namespace: default}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: "!has(app)", notNets: ["{{ip "cli"}}/32"]}}]`)
	want := `tcp/80: 5 allowed, 1 denied (rows: from, columns: to; . allowed, X denied, ? not probed)
-   cli db web
cli -   X  .
db  .   -  .
web .   .  -
`
	// Wait until web's own server holds its port.
	for deadline := time.Now().Add(expectWithin); ; {
		ln, err := lab.ListenProbe(w.cs["web"].NetNS, lab.ProbeTCP, netip.AddrPortFrom(w.ip("web"), 80))
		if err != nil {
			break
		}
		ln.Close()
		if time.Now().After(deadline) {
			t.Fatal("web's server does not listen on port 80")
		}
		time.Sleep(50 * time.Millisecond)
	}
	name := w.lab.Name()
	var out string
	deadline := time.Now().Add(expectWithin)
	for {
		var err error
		out, err = w.tabby("", "lab", "probe", name, "--timeout", "1s")
		if err != nil {
			t.Fatal(err)
		}
		if out == want || time.Now().After(deadline) {
			break
		}
	}
	if out != want {
		t.Fatalf("tabby lab probe:\ngot:\n%s\nwant:\n%s", out, want)
	}

	// -o json: every pair with its verdict; web answered with its own
	// server.
	out, err := w.tabby("", "lab", "probe", name, "--timeout", "1s", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r lab.Reachability
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(map[string]string{"cli": "probe", "db": "probe", "web": "container"}, r.Listeners); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	if p, ok := r.Get("cli", "db"); !ok || p.Allowed || p.Detail != "timeout" || p.Address != netip.AddrPortFrom(w.ip("db"), 80).String() {
		t.Errorf("cli->db: got %+v (found %v), want denied (timeout) at db:80", p, ok)
	}
	if len(r.Results) != 6 {
		t.Errorf("got %d results, want 6 pairs", len(r.Results))
	}

	// --from/--to, icmp.
	out, err = w.tabby("", "lab", "probe", name, "--proto", "icmp", "--from", "cli", "--from", "web", "--to", "db", "--timeout", "1s")
	if err != nil {
		t.Fatal(err)
	}
	if want := "icmp: 1 allowed, 1 denied (rows: from, columns: to; . allowed, X denied, ? not probed)\n-   db\ncli X\nweb .\n"; out != want {
		t.Errorf("icmp from cli and web to db:\ngot:\n%s\nwant:\n%s", out, want)
	}

	// udp, with db's port taken by something of its own: db's column is
	// not probed, and says why.
	var pc net.PacketConn
	if err := netns.Do(netns.Path(w.cs["db"].NetNS), func() error {
		var err error
		pc, err = net.ListenPacket("udp", ":81")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	out, err = w.tabby("", "lab", "probe", name, "--proto", "udp", "--port", "81", "--to", "db", "--to", "web", "--timeout", "1s")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"udp/81: 2 allowed, 0 denied, 2 not probed", "cli ?  .", "cli -> db: port 81/udp is taken in the container"} {
		if !strings.Contains(out, s) {
			t.Errorf("udp with db's port taken: output lacks %q:\n%s", s, out)
		}
	}

	// Bad input: a usage error (exit code 2) or a clear one, naming what.
	for _, tc := range []struct {
		args   []string
		code   int
		errHas string
	}{
		{[]string{"lab", "probe", name, "--proto", "sctp"}, 2, `protocol "sctp"`},
		{[]string{"lab", "probe", name, "--port", "70000"}, 2, "port 70000"},
		{[]string{"lab", "probe", name, "--proto", "icmp", "--port", "80"}, 2, "icmp has no ports"},
		{[]string{"lab", "probe", name, "-o", "yaml"}, 2, `-o "yaml"`},
		{[]string{"lab", "probe", name, "--from", "nosuch"}, 1, `from "nosuch": no such container`},
		{[]string{"lab", "probe", "nolab"}, 1, `lab "nolab" does not exist`},
	} {
		_, err := w.tabby("", tc.args...)
		var ee *exec.ExitError
		if err == nil || !strings.Contains(err.Error(), tc.errHas) || !errors.As(err, &ee) || ee.ExitCode() != tc.code {
			t.Errorf("tabby %s: got %v, want exit code %d and an error containing %q", strings.Join(tc.args, " "), err, tc.code, tc.errHas)
		}
	}
}
