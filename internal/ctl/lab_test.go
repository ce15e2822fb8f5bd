package ctl

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/testenv"
)

// fakeLab writes the state files of a lab (no namespaces, no processes)
// under a temporary lab root, and points the CLI at that root.
func fakeLab(t *testing.T, name string) string {
	t.Helper()
	return fakeLabFamily(t, name, lab.IPv4)
}

// fakeLabFamily is fakeLab for a lab of IP family fam (the container gets
// an address of each family the lab's pools have).
func fakeLabFamily(t *testing.T, name, fam string) string {
	t.Helper()
	testenv.NeedTool(t, "ip")
	root := t.TempDir()
	old := labRoot
	labRoot = root
	t.Cleanup(func() { labRoot = old })
	p, err := lab.MakePlan(lab.Config{Name: name, Nodes: 2, BinDir: "/b", IPFamily: fam}.WithDefaults(), 1, "8d1c2f3e-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatal(err)
	}
	st := lab.State{Plan: *p, Phase: lab.PhaseReady, Created: time.Date(2017, 7, 18, 10, 0, 0, 0, time.UTC), Nodes: 2, NRacks: 1, Pool: lab.DefaultPool, Encap: "none"}
	cs := []lab.Container{{
		Name: "web", Node: "h2", Namespace: "default", Network: "tabby", Phase: lab.PhaseRunning,
		Labels: map[string]string{"app": "web", "group": "dev"},
		IPs:    []netip.Prefix{netip.MustParsePrefix("10.244.28.128/32")},
	}}
	if fam != lab.IPv4 {
		st.IPFamily, st.Pool6 = fam, lab.DefaultPool6
		cs[0].IPs = append(cs[0].IPs, netip.MustParsePrefix("fd00:244::1c:8/128"))
	}
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, v := range map[string]any{"lab.json": st, "containers.json": cs} {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestLabCommandsOnState(t *testing.T) {
	fakeLab(t, "demo")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // substrings of stdout (code 0) or stderr
	}{
		{"nodes", []string{"lab", "nodes", "demo"}, 0, []string{
			"HOSTNAME  IP           ID                                       TYPE\n" +
				"master    10.101.1.2   8d1c2f3e-0000-4000-8000-000000000001     master (leader)\n" +
				"h1        10.101.1.11  8d1c2f3e-0000-4000-8000-000000000001-S0  agent\n" +
				"h2        10.101.1.12  8d1c2f3e-0000-4000-8000-000000000001-S1  agent\n",
		}},
		{"nodes json", []string{"lab", "nodes", "demo", "-o", "json"}, 0, []string{`"hostname": "h1"`, `"namespace": "tlab-demo-h1"`, `"running": false`}},
		{"ls", []string{"lab", "ls", "demo"}, 0, []string{"CONTAINER", "web (exited)", "h2", "default", "10.244.28.128", "app=web,group=dev"}},
		{"ls json", []string{"lab", "ls", "demo", "-o", "json"}, 0, []string{`"name": "web"`, `"10.244.28.128/32"`}},
		{"list", []string{"lab", "list"}, 0, []string{"NAME", "demo", "ready", "10.244.0.0/16"}},
		{"list json", []string{"lab", "list", "-o", "json"}, 0, []string{`"name": "demo"`}},
		{"unknown lab", []string{"lab", "nodes", "nope"}, 1, []string{`lab "nope" does not exist`}},
		{"bad output", []string{"lab", "ls", "demo", "-o", "yaml"}, 2, []string{`-o "yaml"`}},
		{"ssh unknown node", []string{"lab", "ssh", "demo", "h9", "--", "true"}, 1, []string{`no node "h9"`}},
		{"exec unknown container", []string{"lab", "exec", "demo", "db", "--", "true"}, 1, []string{`no container "db"`}},
		{"exec without command", []string{"lab", "exec", "demo", "web"}, 2, []string{"want NAME C -- CMD"}},
		{"agent bad action", []string{"lab", "agent", "demo", "h1", "dance"}, 2, []string{`action "dance"`}},
		{"agent unknown node", []string{"lab", "agent", "demo", "h7", "stop"}, 1, []string{`no node "h7"`}},
		{"run without command", []string{"lab", "run", "demo", "--node", "h1", "--name", "c"}, 2, []string{"command: required"}},
		{"run bad label", []string{"lab", "run", "demo", "--node", "h1", "--name", "c", "--label", "nolabel", "--", "true"}, 2, []string{`label "nolabel"`}},
		{"run bad app", []string{"lab", "run", "demo", "--node", "h1", "--name", "c", "--mesos-app", "/A", "--", "true"}, 2, []string{`mesos app "/A"`}},
		{"run unknown node", []string{"lab", "run", "demo", "--node", "h9", "--name", "c", "--", "true"}, 1, []string{`no host "h9"`}},
		{"run duplicate", []string{"lab", "run", "demo", "--node", "h1", "--name", "web", "--", "true"}, 1, []string{`container "web" exists already`}},
		{"up bad name", []string{"lab", "up", "Demo"}, 2, []string{`lab name "Demo"`}},
		{"up bad encap", []string{"lab", "up", "x", "--encap", "gre"}, 2, []string{`encap "gre"`}},
		{"up bad pool", []string{"lab", "up", "x", "--pool", "10.101.0.0/16"}, 2, []string{"overlaps the lab fabric"}},
		{"up bad ip family", []string{"lab", "up", "x", "--ip-family", "ipv5"}, 2, []string{`--ip-family "ipv5": want ipv4, ipv6 or dual`}},
		{"up pool6 not ula", []string{"lab", "up", "x", "--ip-family", "dual", "--pool6", "2001:db8::/64"}, 2, []string{"pool6 2001:db8::/64", "unique local"}},
		{"up pool6 not a cidr", []string{"lab", "up", "x", "--ip-family", "dual", "--pool6", "six"}, 2, []string{`--pool6 "six"`}},
		{"up pool not a cidr", []string{"lab", "up", "x", "--pool", "ten"}, 2, []string{`--pool "ten"`}},
		{"down unknown", []string{"lab", "down", "nope"}, 1, []string{`lab "nope" does not exist`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			got := out
			if code != 0 {
				got = errOut
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output: got\n%s\nwant it to contain %q", got, w)
				}
			}
		})
	}
}

func TestLabCommandsOnDualState(t *testing.T) {
	fakeLabFamily(t, "ds", lab.Dual)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"nodes", []string{"lab", "nodes", "ds"}, []string{
			"master    10.101.1.2,fd00:10:101:1::2    ",
			"h2        10.101.1.12,fd00:10:101:1::12  ",
		}},
		{"nodes json", []string{"lab", "nodes", "ds", "-o", "json"}, []string{`"ip6": "fd00:10:101:1::11/64"`}},
		{"ls", []string{"lab", "ls", "ds"}, []string{"10.244.28.128,fd00:244::1c:8"}},
		{"list", []string{"lab", "list"}, []string{"10.244.0.0/16,fd00:244::/64"}},
		{"list json", []string{"lab", "list", "-o", "json"}, []string{`"ipFamily": "dual"`, `"pool6": "fd00:244::/64"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit code: got %d, want 0\nstderr: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output: got\n%s\nwant it to contain %q", out, w)
				}
			}
		})
	}
}

func TestLabDatastoreFlag(t *testing.T) {
	root := fakeLab(t, "demo")
	g := &globals{lab: "demo"}
	cfg, err := g.etcdConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := "unix://" + filepath.Join(root, "demo", "etcd.sock")
	if len(cfg.Endpoints) != 1 || cfg.Endpoints[0] != want {
		t.Errorf("--lab demo: got endpoints %v, want [%s]", cfg.Endpoints, want)
	}
	g = &globals{lab: "nope"}
	if _, err := g.etcdConfig(); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("--lab nope: got %v, want does not exist", err)
	}
	g = &globals{lab: "demo", datastore: "http://127.0.0.1:2379"}
	if _, err := g.etcdConfig(); err == nil {
		t.Errorf("--lab with --datastore: got no error, want one")
	}
}

func TestLabDNSDetection(t *testing.T) {
	root := newRoot(&globals{})
	d := labDNS(root)
	if d == nil {
		t.Fatal("this build has a dns command with --listen and --mesos-master: want the lab to run it")
	}
	args := strings.Join(d.Args(netip.MustParseAddr("10.101.1.2"), "http://10.101.1.2:2379", "http://10.101.1.2:5050"), " ")
	for _, w := range []string{"dns", "--listen 10.101.1.2:53", "--mesos-master http://10.101.1.2:5050", "--datastore http://10.101.1.2:2379"} {
		if !strings.Contains(args, w) {
			t.Errorf("dns args: got %q, want %q in them", args, w)
		}
	}
	// Every flag the lab passes must exist on the dns command.
	c, _, err := root.Find([]string{"dns"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ParseFlags(d.Args(netip.MustParseAddr("10.101.1.2"), "http://a:1", "http://b:2")[1:]); err != nil {
		t.Errorf("dns flags: %v", err)
	}
}

// Every `tabby …` line in the sh blocks of docs/lab.md names a real
// command with flags it accepts.
func TestLabDocsCommands(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "lab.md"))
	if err != nil {
		t.Fatal(err)
	}
	inSh, n := false, 0
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh = true
			continue
		case strings.HasPrefix(line, "```"):
			inSh = false
			continue
		}
		if !inSh || !strings.HasPrefix(line, "tabby ") {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		args := strings.Fields(line)[1:]
		root := newRoot(&globals{})
		c, rest, err := root.Find(args)
		if err != nil || c == root {
			t.Errorf("%q: no such command (%v)", line, err)
			continue
		}
		if err := c.ParseFlags(rest); err != nil {
			t.Errorf("%q: %v", line, err)
		}
		n++
	}
	if n < 5 {
		t.Errorf("found %d tabby commands in docs/lab.md, want the examples checked", n)
	}
}

// TestLabPolicyCommandsBadInput: the lab's network, namespace, label and
// --port inputs are checked before anything is done, naming the value.
func TestLabPolicyCommandsBadInput(t *testing.T) {
	fakeLab(t, "demo")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "run", "demo", "--node", "h1", "--name", "c", "--port", "web", "--", "sleep", "1"}, `port "web": want NAME=PORT/PROTO`},
		{[]string{"lab", "run", "demo", "--node", "h1", "--name", "c", "--port", "web=80/icmp", "--", "sleep", "1"}, `protocol "ICMP"`},
		{[]string{"lab", "run", "demo", "--node", "h1", "--name", "c", "--mesos-app", "/a/b", "--port", "web=80", "--", "sleep", "1"}, "a Mesos attach carries no port names"},
		{[]string{"lab", "up", "demo2", "--network", "Blue"}, `network name "Blue"`},
		{[]string{"lab", "up", "demo2", "--network", "blue,pool=10.244.0.0/17"}, "overlaps the default pool"},
		{[]string{"lab", "network", "demo", "blue,pool=nope"}, `pool "nope": not a CIDR`},
		{[]string{"lab", "namespace", "demo", "pay", "--label", "team"}, `label "team": want key=value`},
		{[]string{"lab", "label", "demo", "web"}, "give KEY=VALUE or --remove KEY"},
		{[]string{"lab", "label", "demo", "web", "a=1", "a=2"}, `label "a": given twice`},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
