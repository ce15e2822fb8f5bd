package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/cni/cnitest"
)

// fakeNetNS is a CNI_NETNS that is no network namespace: the fake agent
// never enters it, and skel's own-netns check skips what it cannot open.
const fakeNetNS = "/var/run/netns/tabby-test-none"

type network struct {
	version string
	list    *libcni.NetworkConfigList // >= 0.3.0
	single  *libcni.NetworkConfig     // older
}

func newNetwork(t *testing.T, version, socket string) network {
	t.Helper()
	n := network{version: version}
	plugin := map[string]any{"type": "tabby", "agent_socket": socket, "capabilities": map[string]bool{"portMappings": true}}
	if version >= "0.3.0" {
		conf, _ := json.Marshal(map[string]any{"cniVersion": version, "name": "tnet", "plugins": []any{plugin}})
		list, err := libcni.NetworkConfFromBytes(conf)
		if err != nil {
			t.Fatalf("conflist: %v", err)
		}
		n.list = list
		return n
	}
	plugin["cniVersion"], plugin["name"] = version, "tnet"
	conf, _ := json.Marshal(plugin)
	single, err := libcni.NetworkPluginConfFromBytes(conf)
	if err != nil {
		t.Fatalf("conf: %v", err)
	}
	n.single = single
	return n
}

func (n network) add(ctx context.Context, c *libcni.CNIConfig, rt *libcni.RuntimeConf) (types.Result, error) {
	if n.list != nil {
		return c.AddNetworkList(ctx, n.list, rt)
	}
	return c.AddNetwork(ctx, n.single, rt)
}

func (n network) check(ctx context.Context, c *libcni.CNIConfig, rt *libcni.RuntimeConf) error {
	if n.list != nil {
		return c.CheckNetworkList(ctx, n.list, rt)
	}
	return c.CheckNetwork(ctx, n.single, rt)
}

func (n network) del(ctx context.Context, c *libcni.CNIConfig, rt *libcni.RuntimeConf) error {
	if n.list != nil {
		return c.DelNetworkList(ctx, n.list, rt)
	}
	return c.DelNetwork(ctx, n.single, rt)
}

func runtimeConf(containerID string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: containerID,
		NetNS:       fakeNetNS,
		IfName:      "eth0",
		Args:        [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "prod"}, {"K8S_POD_NAME", containerID + "-pod"}},
		CapabilityArgs: map[string]any{
			"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}},
		},
	}
}

// TestLibcniEveryVersion drives the built plugin through libcni against a
// fake agent on a real socket: ADD, CHECK, DEL, GC, STATUS and VERSION in
// each CNI version, with the commands a version lacks refused.
func TestLibcniEveryVersion(t *testing.T) {
	for _, v := range cni.SupportedVersions {
		t.Run(v, func(t *testing.T) {
			ctx := context.Background()
			agent := cnitest.NewAgent()
			socket := cnitest.Serve(t, agent)
			c := libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
			n := newNetwork(t, v, socket)

			// VERSION.
			info, err := c.GetVersionInfo(ctx, "tabby")
			if err != nil {
				t.Fatalf("VERSION: %v", err)
			}
			if diff := cmp.Diff(cni.SupportedVersions, info.SupportedVersions()); diff != "" {
				t.Errorf("supported versions (-want +got):\n%s", diff)
			}

			// ADD.
			rt := runtimeConf("ctr-a")
			res, err := n.add(ctx, c, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if res.Version() != v {
				t.Errorf("result version = %q; want %q", res.Version(), v)
			}
			r100, err := types100.NewResultFromResult(res)
			if err != nil {
				t.Fatalf("convert result: %v", err)
			}
			if len(r100.IPs) != 1 || r100.IPs[0].Address.String() != "10.65.0.1/32" {
				t.Errorf("ADD IPs = %v; want 10.65.0.1/32", r100.IPs)
			}
			got := agent.Last(cni.CmdAdd)
			wantID := cni.Identity{Orchestrator: "k8s", Namespace: "prod", Workload: "ctr-a-pod", Pod: "ctr-a-pod", ContainerID: "ctr-a",
				InterfaceName: "eth0", Network: "tnet", IPAMHandle: "tnet.ctr-a.eth0",
				Ports: []cni.Port{{Protocol: "TCP", Port: 80, HostPort: 8080}}}
			if diff := cmp.Diff(&wantID, got.Identity); diff != "" {
				t.Errorf("identity the agent got (-want +got):\n%s", diff)
			}
			if got.NetNS != fakeNetNS || got.NetConf.CNIVersion != v || got.Mode != cni.ModeAttach {
				t.Errorf("agent got netns %q, version %q, mode %q; want %q, %q, attach", got.NetNS, got.NetConf.CNIVersion, got.Mode, fakeNetNS, v)
			}

			// CHECK: from 0.4.0; libcni refuses it before, and so does
			// the plugin when executed anyway.
			err = n.check(ctx, c, rt)
			if v >= "0.4.0" {
				if err != nil {
					t.Errorf("CHECK: %v", err)
				}
				if agent.Last(cni.CmdCheck) == nil {
					t.Errorf("agent got no CHECK")
				}
			} else {
				if !errors.Is(err, libcni.ErrorCheckNotSupp) {
					t.Errorf("CHECK with %s: %v; want libcni's refusal", v, err)
				}
				assertExecCode(t, "CHECK", v, socket, types.ErrIncompatibleCNIVersion)
			}

			// GC and STATUS: from 1.1.0.
			if v == "1.1.0" {
				rtB := runtimeConf("ctr-b")
				if _, err := n.add(ctx, c, rtB); err != nil {
					t.Fatalf("ADD ctr-b: %v", err)
				}
				valid := []types.GCAttachment{{ContainerID: "ctr-a", IfName: "eth0"}}
				if err := c.GCNetworkList(ctx, n.list, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
					t.Fatalf("GC: %v", err)
				}
				gc := agent.Last(cni.CmdGC)
				if gc == nil || !slices.Equal(gc.ValidAttachments, []cni.Attachment{{ContainerID: "ctr-a", IfName: "eth0"}}) {
					t.Errorf("agent got GC %+v; want valid attachments [ctr-a/eth0]", gc)
				}
				if diff := cmp.Diff([]string{"tnet.ctr-a.eth0"}, agent.Handles()); diff != "" {
					t.Errorf("handles after GC (-want +got):\n%s", diff)
				}
				if err := c.GetStatusNetworkList(ctx, n.list); err != nil {
					t.Errorf("STATUS: %v", err)
				}
				agent.SetNotReady(cni.Errorf(types.ErrPluginNotAvailable, "tabby agent is not ready"))
				err := c.GetStatusNetworkList(ctx, n.list)
				var te *types.Error
				if !errors.As(err, &te) || te.Code != types.ErrPluginNotAvailable {
					t.Errorf("STATUS when not ready: %v; want code 50", err)
				}
				agent.SetNotReady(nil)
			} else {
				if n.list != nil {
					if err := c.GetStatusNetworkList(ctx, n.list); err != nil {
						t.Errorf("STATUS below 1.1.0 should be a no-op in libcni: %v", err)
					}
				}
				if agent.Last(cni.CmdStatus) != nil {
					t.Errorf("agent got STATUS for CNI %s", v)
				}
				assertExecCode(t, "GC", v, socket, types.ErrIncompatibleCNIVersion)
				assertExecCode(t, "STATUS", v, socket, types.ErrIncompatibleCNIVersion)
			}

			// DEL, twice, the second without a netns.
			if err := n.del(ctx, c, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			rt.NetNS = ""
			if err := n.del(ctx, c, rt); err != nil {
				t.Fatalf("second DEL without netns: %v", err)
			}
			if h := agent.Handles(); len(h) != 0 {
				t.Errorf("handles after DEL = %v; want none", h)
			}
		})
	}
}

// execPlugin runs the plugin binary like a runtime: exactly env, stdin.
func execPlugin(t *testing.T, name string, env []string, stdin string) (stdout string, exitCode int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("run %s: %v (stderr %s)", name, err, stderr.String())
	return "", -1
}

type errorOut struct {
	CNIVersion string `json:"cniVersion"`
	Code       uint   `json:"code"`
	Msg        string `json:"msg"`
}

func parseError(t *testing.T, out string) errorOut {
	t.Helper()
	var e errorOut
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("stdout %q is not a CNI error: %v", out, err)
	}
	return e
}

func assertExecCode(t *testing.T, cmd, version, socket string, code uint) {
	t.Helper()
	stdin := fmt.Sprintf(`{"cniVersion":%q,"name":"tnet","type":"tabby","agent_socket":%q}`, version, socket)
	env := []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=ctr-x", "CNI_NETNS=" + fakeNetNS, "CNI_IFNAME=eth0", "CNI_PATH=" + binDir}
	out, exit := execPlugin(t, "tabby", env, stdin)
	if exit == 0 {
		t.Errorf("%s with CNI %s exited 0; want a failure", cmd, version)
		return
	}
	if e := parseError(t, out); e.Code != code {
		t.Errorf("%s with CNI %s: code %d (%s); want %d", cmd, version, e.Code, e.Msg, code)
	}
}

// mesosStdin is what the Mesos network/cni isolator writes to the plugin:
// the config file (DC/OS's Universe calico.cni with the type changed)
// with args["org.apache.mesos"]["network_info"] injected, as Mesos
// serializes the NetworkInfo protobuf.
const mesosStdin = `{"args":{"org.apache.mesos":{"network_info":{"ip_addresses":[{}],"labels":{"labels":[{"key":"app","value":"frontend"},{"key":"group","value":"development"},{"key":"MARATHON_APP_ID","value":"/development/frontend"}]},"name":"calico","port_mappings":[{"container_port":80,"host_port":31080,"protocol":"tcp"}]}}},"etcd_endpoints":"http://localhost:2379","ipam":{"type":"tabby-ipam"},"name":"calico","type":"tabby","agent_socket":"SOCKET"}`

const mesosContainerID = "3c7a4b5e-8f1d-4e2a-9b6c-0d1e2f3a4b5c"

func mesosEnv(cmd string, withNetNS bool) []string {
	env := []string{
		"CNI_COMMAND=" + cmd,
		"CNI_CONTAINERID=" + mesosContainerID,
		"CNI_IFNAME=eth0",
		"CNI_PATH=/opt/mesosphere/active/cni/:" + binDir,
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	if withNetNS {
		env = append(env, "CNI_NETNS=/var/run/mesos/isolators/network/cni/"+mesosContainerID+"/ns")
	}
	return env
}

// TestMesos replays what Mesos does: no CNI_ARGS, a UUID container ID,
// eth0, a bind-mounted netns path; the result must be the 0.2.0 shape;
// DEL comes with the same stdin and, after a reboot, without CNI_NETNS.
func TestMesos(t *testing.T) {
	for _, tc := range []struct {
		name, version, wantVersion string
	}{
		{name: "universe config without cniVersion", version: "", wantVersion: "0.2.0"},
		{name: "dcos delegate with 0.1.0", version: "0.1.0", wantVersion: "0.1.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := cnitest.NewAgent()
			socket := cnitest.Serve(t, agent)
			stdin := strings.Replace(mesosStdin, "SOCKET", socket, 1)
			if tc.version != "" {
				stdin = strings.Replace(stdin, `{"args"`, `{"cniVersion":"`+tc.version+`","args"`, 1)
			}
			out, exit := execPlugin(t, "tabby", mesosEnv("ADD", true), stdin)
			if exit != 0 {
				t.Fatalf("ADD exited %d: %s", exit, out)
			}
			var res map[string]any
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("ADD result %q: %v", out, err)
			}
			ip4, _ := res["ip4"].(map[string]any)
			if res["cniVersion"] != tc.wantVersion || ip4 == nil || ip4["ip"] != "10.65.0.1/32" || ip4["gateway"] != "169.254.1.1" {
				t.Errorf("ADD result = %s; want cniVersion %s with ip4.ip 10.65.0.1/32 and a gateway", out, tc.wantVersion)
			}
			if _, ok := res["ips"]; ok {
				t.Errorf("ADD result = %s; it must never hold ips[] for Mesos", out)
			}
			add := agent.Last(cni.CmdAdd)
			wantID := cni.Identity{Orchestrator: "mesos", Namespace: "default", Workload: mesosContainerID, ContainerID: mesosContainerID,
				InterfaceName: "eth0", Network: "calico", IPAMHandle: "calico." + mesosContainerID + ".eth0",
				Labels: map[string]string{"app": "frontend", "group": "development", "MARATHON_APP_ID": "development.frontend"},
				Ports:  []cni.Port{{Protocol: "TCP", Port: 80, HostPort: 31080}}}
			if diff := cmp.Diff(&wantID, add.Identity); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
			if add.Args != "" {
				t.Errorf("CNI_ARGS = %q; Mesos sends none", add.Args)
			}

			// DEL after a reboot: same stdin, no CNI_NETNS.
			out, exit = execPlugin(t, "tabby", mesosEnv("DEL", false), stdin)
			if exit != 0 || out != "" {
				t.Fatalf("DEL exited %d with %q; want 0 and no output", exit, out)
			}
			del := agent.Last(cni.CmdDel)
			if del.NetNS != "" || del.Identity.IPAMHandle != add.Identity.IPAMHandle {
				t.Errorf("DEL netns %q handle %q; want none and %q", del.NetNS, del.Identity.IPAMHandle, add.Identity.IPAMHandle)
			}
			if h := agent.Handles(); len(h) != 0 {
				t.Errorf("handles after DEL = %v; want none", h)
			}
			// DEL again (Mesos recovery) is fine.
			if out, exit = execPlugin(t, "tabby", mesosEnv("DEL", false), stdin); exit != 0 {
				t.Errorf("second DEL exited %d: %s", exit, out)
			}
		})
	}
}

func TestAgentDown(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "nothing-here.sock")
	for _, tc := range []struct {
		cmd, version string
		code         uint
	}{
		{cmd: "ADD", version: "", code: types.ErrTryAgainLater},
		{cmd: "DEL", version: "0.3.1", code: types.ErrTryAgainLater},
		{cmd: "STATUS", version: "1.1.0", code: types.ErrPluginNotAvailable},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			stdin := fmt.Sprintf(`{"name":"n","type":"tabby","agent_socket":%q}`, socket)
			if tc.version != "" {
				stdin = fmt.Sprintf(`{"cniVersion":%q,"name":"n","type":"tabby","agent_socket":%q}`, tc.version, socket)
			}
			out, exit := execPlugin(t, "tabby", mesosEnv(tc.cmd, true), stdin)
			if exit == 0 {
				t.Fatalf("%s exited 0 with the agent down", tc.cmd)
			}
			e := parseError(t, out)
			want := `tabby agent is not reachable at ` + socket + `: connect: no such file or directory; start it with "tabby agent --node NAME --datastore URLS"`
			if e.Code != tc.code || e.Msg != want || e.CNIVersion != cni.ResultVersion(tc.version) {
				t.Errorf("error = %+v; want code %d, version %s, msg %q", e, tc.code, cni.ResultVersion(tc.version), want)
			}
		})
	}
}

func TestIPAMSymlink(t *testing.T) {
	agent := cnitest.NewAgent()
	socket := cnitest.Serve(t, agent)
	stdin := fmt.Sprintf(`{"cniVersion":"0.4.0","name":"br","type":"bridge","bridge":"cni0","isGateway":true,"ipam":{"type":"tabby-ipam","agent_socket":%q}}`, socket)
	env := []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=ctr-1", "CNI_NETNS=" + fakeNetNS, "CNI_IFNAME=eth0", "CNI_PATH=" + binDir}
	out, exit := execPlugin(t, "tabby-ipam", env, stdin)
	if exit != 0 {
		t.Fatalf("tabby-ipam ADD exited %d: %s", exit, out)
	}
	if got := agent.Last(cni.CmdAdd); got.Mode != cni.ModeIPAM {
		t.Errorf("mode = %q; want %q", got.Mode, cni.ModeIPAM)
	}
	if strings.Contains(out, "interfaces") || !strings.Contains(out, `"10.65.0.1/32"`) {
		t.Errorf("IPAM result = %s; want an address and no interfaces", out)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name        string
		env         []string
		stdin       string
		code        uint
		version     string
		wantInMsg   string
		wantNoAgent bool
	}{
		{name: "bad mtu", env: mesosEnv("ADD", true), stdin: `{"cniVersion":"0.3.1","name":"n","type":"tabby","mtu":9999999}`,
			code: types.ErrInvalidNetworkConfig, version: "0.3.1", wantInMsg: `field "mtu": 9999999`},
		{name: "missing env", env: []string{"CNI_COMMAND=ADD"}, stdin: `{"name":"n","type":"tabby"}`,
			code: types.ErrInvalidEnvironmentVariables, version: "1.1.0", wantInMsg: "CNI_CONTAINERID"},
		{name: "unsupported version", env: mesosEnv("ADD", true), stdin: `{"cniVersion":"2.0.0","name":"n","type":"tabby"}`,
			code: types.ErrIncompatibleCNIVersion, version: "1.1.0", wantInMsg: "incompatible"},
		{name: "not JSON", env: mesosEnv("ADD", true), stdin: `{"name":`,
			code: types.ErrDecodingFailure, version: "1.1.0"},
		{name: "bad CNI_ARGS", env: append(mesosEnv("ADD", true), "CNI_ARGS=K8S_POD_NAME"), stdin: `{"name":"n","type":"tabby"}`,
			code: types.ErrInvalidEnvironmentVariables, version: "0.2.0", wantInMsg: "CNI_ARGS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, exit := execPlugin(t, "tabby", tc.env, tc.stdin)
			if exit == 0 {
				t.Fatalf("exited 0; want a failure")
			}
			e := parseError(t, out)
			if e.Code != tc.code || e.CNIVersion != tc.version || !strings.Contains(e.Msg, tc.wantInMsg) {
				t.Errorf("error = %+v; want code %d, version %s, msg with %q", e, tc.code, tc.version, tc.wantInMsg)
			}
		})
	}
}
