package ctl

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConsoleBadInput(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{name: "listen", args: []string{"console", "--listen", "nope"}, code: 2, want: `console: --listen "nope": want HOST:PORT`},
		{name: "agent port", args: []string{"console", "--agent-port", "0"}, code: 2, want: "console: --agent-port 0: want 1-65535"},
		{name: "log level", args: []string{"console", "--log-level", "loud"}, code: 1, want: `--log-level: "loud" is not debug`},
		{name: "args", args: []string{"console", "x"}, code: 1, want: `unknown command "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := c.run(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("tabby %s: exit %d, %q%q; want exit %d and %q", strings.Join(tc.args, " "), code, out, errs, tc.code, tc.want)
			}
		})
	}
}

// TestConsoleServes runs `tabby console` against a datastore and loads a
// page: it shows the node applied before; the command ends with its context.
func TestConsoleServes(t *testing.T) {
	c := newCLI(t)
	c.stdin = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 127.0.0.1/8}}\n"
	c.ok("apply", "-f", "-")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	g := &globals{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr}
	root := newRoot(g)
	// An agent port nothing listens on: the node shows, with the error.
	root.SetArgs([]string{"--datastore", c.ds, "console", "--listen", addr, "--agent-port", "1"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/nodes")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(body, `id="node-n1"`) || !strings.Contains(body, "BGP sessions unknown: node n1") {
		t.Errorf("GET /nodes: %q, want node n1 and its agent's error", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("console: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("console did not stop with its context")
	}
	if !strings.Contains(stderr.String(), "tabby console on http://"+addr+"/") {
		t.Errorf("stderr %q: want the address", stderr.String())
	}
}

// The arguments tabby lab up gives the master's console are flags the
// console command takes.
func TestLabConsoleArgs(t *testing.T) {
	args := labConsole().Args(netip.MustParseAddrPort("10.101.1.2:9098"), "http://10.101.1.2:2379", "/run/tabby/lab/demo")
	if got := strings.Join(args, " "); got != "console --listen 10.101.1.2:9098 --datastore http://10.101.1.2:2379 --lab-dir /run/tabby/lab/demo" {
		t.Errorf("console args: %q", got)
	}
	root := newRoot(&globals{})
	c, rest, err := root.Find(args)
	if err != nil || c.Name() != "console" {
		t.Fatalf("find %q: %v, %v", args, c, err)
	}
	if err := c.ParseFlags(rest); err != nil {
		t.Errorf("console flags: %v", err)
	}
}
