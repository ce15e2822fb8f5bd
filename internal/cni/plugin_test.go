package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/cni/cnitest"
)

func TestModeFor(t *testing.T) {
	tests := []struct {
		name, argv0, conf string
		want              cni.Mode
		wantErr           string
	}{
		{name: "tabby", argv0: "/opt/cni/bin/tabby", conf: `{"name":"n","type":"tabby"}`, want: cni.ModeAttach},
		{name: "tabby with tabby-ipam", argv0: "tabby", conf: `{"name":"n","type":"tabby","ipam":{"type":"tabby-ipam"}}`, want: cni.ModeAttach},
		{name: "tabby-ipam under bridge", argv0: "/opt/cni/bin/tabby-ipam", conf: `{"name":"n","type":"bridge","ipam":{"type":"tabby-ipam"}}`, want: cni.ModeIPAM},
		{name: "tabby-ipam as the plugin", argv0: "tabby-ipam", conf: `{"name":"n","type":"tabby-ipam"}`, want: cni.ModeIPAM},
		{name: "other name, type tabby", argv0: "tabby-cni", conf: `{"name":"n","type":"tabby"}`, want: cni.ModeAttach},
		{name: "other name, type tabby-ipam", argv0: "tabby-cni", conf: `{"name":"n","type":"tabby-ipam"}`, want: cni.ModeIPAM},
		{name: "other name, ipam of bridge", argv0: "tabby-cni", conf: `{"name":"n","type":"bridge","ipam":{"type":"tabby-ipam"}}`, want: cni.ModeIPAM},
		{name: "other name, other type", argv0: "calico", conf: `{"name":"n","type":"calico"}`, want: cni.ModeAttach},
		{name: "tabby with host-local", argv0: "tabby", conf: `{"name":"n","type":"tabby","ipam":{"type":"host-local"}}`, wantErr: `"ipam.type": "host-local"`},
		{name: "tabby with calico-ipam", argv0: "tabby", conf: `{"name":"n","type":"tabby","ipam":{"type":"calico-ipam"}}`, wantErr: `"calico-ipam"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := cni.ParseConfig([]byte(tc.conf))
			if err != nil {
				t.Fatal(err)
			}
			got, err := cni.ModeFor(tc.argv0, conf)
			if tc.wantErr != "" {
				if err == nil || cni.CodeOf(err, 0) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ModeFor error = %v; want code 7 with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ModeFor(%q) = %q, %v; want %q", tc.argv0, got, err, tc.want)
			}
		})
	}
}

// plugin returns a plugin talking to h through a real socket.
func plugin(t *testing.T, argv0 string, h cni.Handler) (*cni.Plugin, *bytes.Buffer, string) {
	t.Helper()
	socket := cnitest.Serve(t, h)
	var out bytes.Buffer
	p := cni.NewPlugin(cni.PluginOptions{Argv0: argv0, Stdout: &out, Version: "v0.0.1-test"})
	return p, &out, socket
}

func withSocket(t *testing.T, conf, socket string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(conf), &m); err != nil {
		t.Fatal(err)
	}
	m["agent_socket"] = socket
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cmdArgs(stdin []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: "c1", Netns: "/var/run/netns/x", IfName: "eth0", Path: "/opt/cni/bin", StdinData: stdin}
}

func TestPluginAddEveryVersion(t *testing.T) {
	for _, v := range append([]string{""}, cni.SupportedVersions...) {
		t.Run("v"+v, func(t *testing.T) {
			agent := cnitest.NewAgent()
			p, out, socket := plugin(t, "/opt/cni/bin/tabby", agent)
			conf := `{"name":"net1","type":"tabby"}`
			if v != "" {
				conf = `{"cniVersion":"` + v + `","name":"net1","type":"tabby"}`
			}
			if err := p.RunCommand(cni.CmdAdd, cmdArgs(withSocket(t, conf, socket))); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			res, err := cni.ParseResult(out.Bytes(), v)
			if err != nil {
				t.Fatalf("ParseResult(%s): %v", out, err)
			}
			if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.65.0.1/32" {
				t.Errorf("result IPs = %v; want 10.65.0.1/32", res.IPs)
			}
			old := v == "" || v == "0.1.0" || v == "0.2.0"
			if got := strings.Contains(out.String(), `"ip4"`); got != old {
				t.Errorf("result %s: has ip4 = %v; want %v", out, got, old)
			}
			if got := agent.Last(cni.CmdAdd); got == nil || got.Mode != cni.ModeAttach || got.Identity.IPAMHandle != "net1.c1.eth0" {
				t.Errorf("agent got %+v; want an attach ADD with handle net1.c1.eth0", got)
			}
			// Errors from now on are printed in the request's version.
			var e bytes.Buffer
			if err := p.WriteError(&e, types.NewError(7, "x", "")); err != nil {
				t.Fatal(err)
			}
			if want := `"cniVersion": "` + cni.ResultVersion(v) + `"`; !strings.Contains(e.String(), want) {
				t.Errorf("WriteError = %s; want %s", e.String(), want)
			}
		})
	}
}

func TestPluginWriteErrorBeforeConfig(t *testing.T) {
	var e bytes.Buffer
	p := cni.NewPlugin(cni.PluginOptions{})
	if err := p.WriteError(&e, types.NewError(4, "missing env", "")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.String(), `"cniVersion": "1.1.0"`) || !strings.Contains(e.String(), `"code": 4`) {
		t.Errorf("WriteError = %s; want version 1.1.0 and code 4", e.String())
	}
	if !strings.Contains(p.About(), "v0.0.1") && !strings.Contains(p.About(), "dev") {
		t.Errorf("About() = %q; want a version", p.About())
	}
}

func TestPluginCommands(t *testing.T) {
	agent := cnitest.NewAgent()
	p, _, socket := plugin(t, "tabby", agent)
	conf := withSocket(t, `{"cniVersion":"1.1.0","name":"net1","type":"tabby"}`, socket)
	if err := p.RunCommand(cni.CmdAdd, cmdArgs(conf)); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if got := agent.Handles(); len(got) != 1 {
		t.Fatalf("handles after ADD = %v; want one", got)
	}
	// CHECK with the prevResult the runtime cached.
	var m map[string]any
	_ = json.Unmarshal(conf, &m)
	m["prevResult"] = map[string]any{"cniVersion": "1.1.0", "ips": []any{map[string]any{"address": "10.65.0.1/32"}}}
	withPrev, _ := json.Marshal(m)
	if err := p.RunCommand(cni.CmdCheck, cmdArgs(withPrev)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	m["prevResult"] = map[string]any{"cniVersion": "1.1.0", "ips": []any{map[string]any{"address": "10.65.0.9/32"}}}
	wrongPrev, _ := json.Marshal(m)
	if err := p.RunCommand(cni.CmdCheck, cmdArgs(wrongPrev)); err == nil {
		t.Errorf("CHECK with a wrong prevResult succeeded; want the agent's error")
	}
	// STATUS, then not ready.
	if err := p.RunCommand(cni.CmdStatus, &skel.CmdArgs{Path: "/opt/cni/bin", StdinData: conf}); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	agent.SetNotReady(cni.Errorf(types.ErrPluginNotAvailable, "tabby agent is not ready: datastore unreachable"))
	if err := p.RunCommand(cni.CmdStatus, &skel.CmdArgs{Path: "/opt/cni/bin", StdinData: conf}); cni.CodeOf(err, 0) != types.ErrPluginNotAvailable {
		t.Errorf("STATUS when not ready: %v; want code 50", err)
	}
	// GC with no valid attachment releases it; GC without the key is refused.
	m["cni.dev/valid-attachments"] = []any{}
	delete(m, "prevResult")
	gc, _ := json.Marshal(m)
	if err := p.RunCommand(cni.CmdGC, &skel.CmdArgs{Path: "/opt/cni/bin", StdinData: gc}); err != nil {
		t.Errorf("GC: %v", err)
	}
	if got := agent.Handles(); len(got) != 0 {
		t.Errorf("handles after GC = %v; want none", got)
	}
	if err := p.RunCommand(cni.CmdGC, &skel.CmdArgs{Path: "/opt/cni/bin", StdinData: conf}); cni.CodeOf(err, 0) != types.ErrInvalidNetworkConfig ||
		!strings.Contains(err.Error(), "cni.dev/valid-attachments") {
		t.Errorf("GC without attachments: %v; want code 7 naming cni.dev/valid-attachments", err)
	}
	// DEL without a netns (twice: idempotent).
	for i := range 2 {
		a := cmdArgs(conf)
		a.Netns = ""
		if err := p.RunCommand(cni.CmdDel, a); err != nil {
			t.Errorf("DEL #%d: %v", i+1, err)
		}
	}
}

func TestPluginIPAMMode(t *testing.T) {
	agent := cnitest.NewAgent()
	p, out, socket := plugin(t, "/opt/cni/bin/tabby-ipam", agent)
	conf := withSocket(t, `{"cniVersion":"1.0.0","name":"br","type":"bridge","bridge":"cni0","ipam":{"type":"tabby-ipam","assign_ipv6":"true"}}`, socket)
	if err := p.RunCommand(cni.CmdAdd, cmdArgs(conf)); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	got := agent.Last(cni.CmdAdd)
	if got.Mode != cni.ModeIPAM {
		t.Errorf("mode = %q; want %q", got.Mode, cni.ModeIPAM)
	}
	res, err := cni.ParseResult(out.Bytes(), "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces) != 0 || len(res.IPs) != 2 {
		t.Errorf("IPAM result = %s; want two addresses and no interfaces", out)
	}
}

func TestPluginRejectsBeforeForwarding(t *testing.T) {
	tests := []struct {
		name, argv0, conf, args string
		code                    uint
		want                    string
	}{
		{name: "bad mtu", argv0: "tabby", conf: `{"name":"n","type":"tabby","mtu":1}`, code: 7, want: `"mtu": 1`},
		{name: "host-local", argv0: "tabby", conf: `{"name":"n","type":"tabby","ipam":{"type":"host-local"}}`, code: 7, want: `"ipam.type"`},
		{name: "bad CNI_ARGS", argv0: "tabby", conf: `{"name":"n","type":"tabby"}`, args: "K8S_POD_NAME", code: 4, want: "CNI_ARGS"},
		{name: "not JSON object", argv0: "tabby", conf: `[]`, code: 6, want: "JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			agent := cnitest.NewAgent()
			p, _, socket := plugin(t, tc.argv0, agent)
			stdin := []byte(tc.conf)
			if strings.HasPrefix(tc.conf, "{") {
				stdin = withSocket(t, tc.conf, socket)
			}
			a := cmdArgs(stdin)
			a.Args = tc.args
			err := p.RunCommand(cni.CmdAdd, a)
			if cni.CodeOf(err, 0) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ADD error = %v; want code %d with %q", err, tc.code, tc.want)
			}
			if n := len(agent.Requests()); n != 0 {
				t.Errorf("agent got %d requests; want none", n)
			}
		})
	}
}

// TestPluginDelIsLenient: DEL releases an attachment even when its config
// or CNI_ARGS no longer validate.
func TestPluginDelIsLenient(t *testing.T) {
	tests := []struct {
		name, conf, args string
	}{
		{name: "bad value", conf: `{"name":"net1","type":"tabby","mtu":1,"agent_socket":"SOCKET"}`},
		{name: "bad type of value", conf: `{"name":"net1","type":"tabby","mtu":"big","agent_socket":"SOCKET"}`},
		{name: "bad CNI_ARGS", conf: `{"name":"net1","type":"tabby","agent_socket":"SOCKET"}`, args: "garbage"},
		{name: "host-local", conf: `{"name":"net1","type":"tabby","ipam":{"type":"host-local"},"agent_socket":"SOCKET"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			agent := cnitest.NewAgent()
			p, _, socket := plugin(t, "tabby", agent)
			a := cmdArgs([]byte(strings.ReplaceAll(tc.conf, "SOCKET", socket)))
			a.Args = tc.args
			a.Netns = ""
			if err := p.RunCommand(cni.CmdDel, a); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			got := agent.Last(cni.CmdDel)
			if got == nil || got.Identity.IPAMHandle != "net1.c1.eth0" {
				t.Errorf("agent got DEL %+v; want handle net1.c1.eth0", got)
			}
		})
	}
}

func TestPluginUndoesUnprintableAdd(t *testing.T) {
	h := &hookHandler{result: &types100.Result{CNIVersion: "1.1.0"}} // no address
	p, out, socket := plugin(t, "tabby", h)
	err := p.RunCommand(cni.CmdAdd, cmdArgs(withSocket(t, `{"name":"net1","type":"tabby"}`, socket)))
	if cni.CodeOf(err, 0) != types.ErrInternal || !strings.Contains(err.Error(), "no IP address") {
		t.Errorf("ADD error = %v; want code 999 saying there is no IP address", err)
	}
	if out.Len() != 0 {
		t.Errorf("stdout = %q; want nothing", out)
	}
	if last := h.last(); last == nil || last.Command != cni.CmdDel || last.Identity.IPAMHandle != "net1.c1.eth0" {
		t.Errorf("last agent request = %+v; want the undoing DEL", last)
	}

	// Stdout fails after the agent succeeded: the undoing DEL fails too,
	// and the error says both.
	h2 := &hookHandler{result: &types100.Result{IPs: []*types100.IPConfig{{Address: net.IPNet{IP: net.IPv4(10, 0, 0, 1).To4(), Mask: net.CIDRMask(32, 32)}}}}}
	h2.other = func(context.Context, *cni.Request) error { return cni.Errorf(types.ErrTryAgainLater, "agent busy") }
	socket2 := cnitest.Serve(t, h2)
	p2 := cni.NewPlugin(cni.PluginOptions{Argv0: "tabby", Stdout: failWriter{}})
	err = p2.RunCommand(cni.CmdAdd, cmdArgs(withSocket(t, `{"name":"net1","type":"tabby"}`, socket2)))
	if cni.CodeOf(err, 0) != types.ErrIOFailure || !strings.Contains(err.Error(), "write result") || !strings.Contains(err.Error(), "agent busy") {
		t.Errorf("ADD with a failing stdout and undo = %v; want code 5 mentioning the write and the failed undo", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, filepath.ErrBadPattern }

func TestPluginAgentDown(t *testing.T) {
	dir := shortDir(t)
	socket := filepath.Join(dir, "none.sock")
	conf := withSocket(t, `{"cniVersion":"1.1.0","name":"n","type":"tabby"}`, socket)
	p := cni.NewPlugin(cni.PluginOptions{Argv0: "tabby"})
	for cmd, code := range map[string]uint{cni.CmdAdd: 11, cni.CmdDel: 11, cni.CmdStatus: 50} {
		err := p.RunCommand(cmd, cmdArgs(conf))
		if cni.CodeOf(err, 0) != code || !strings.Contains(err.Error(), "tabby agent is not reachable at "+socket) {
			t.Errorf("%s: error %v; want code %d saying the agent is not reachable", cmd, err, code)
		}
	}
}

// TestFuncsReturnLibraryErrors: skel prints any error that is not a
// *types.Error as code 999, so the funcs must convert.
func TestFuncsReturnLibraryErrors(t *testing.T) {
	p := cni.NewPlugin(cni.PluginOptions{Argv0: "tabby"})
	err := p.Funcs().Add(cmdArgs([]byte(`{"name":"n","type":"tabby","mtu":1}`)))
	te, ok := err.(*types.Error)
	if !ok || te.Code != types.ErrInvalidNetworkConfig {
		t.Errorf("Funcs().Add error = %#v; want a *types.Error with code 7", err)
	}
	agent := cnitest.NewAgent()
	socket := cnitest.Serve(t, agent)
	if err := p.Funcs().Del(cmdArgs(withSocket(t, `{"name":"n","type":"tabby"}`, socket))); err != nil {
		t.Errorf("Funcs().Del = %#v; want a nil error interface", err)
	}
}
