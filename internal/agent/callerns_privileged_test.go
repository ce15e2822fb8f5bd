package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/testenv"
)

// privateNetNS starts a process in a new mount namespace that mounts a
// tmpfs over dir and binds a new network namespace at dir/ns there. The
// agent (in its own mount namespace) sees only the empty file dir/ns that
// this function leaves underneath. It returns the holder's PID; the
// namespace lives until the test ends.
func privateNetNS(t *testing.T, dir string) int {
	t.Helper()
	testenv.NeedTools(t, "unshare", "nsenter")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ns"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount -t tmpfs tabby-test %[1]s && touch %[1]s/ns && unshare --net=%[1]s/ns true && echo ready && exec sleep 300", dir)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the runtime's mount namespace: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("runtime mount namespace: %q %v: %s", line, err, stderr.String())
	}
	return cmd.Process.Pid
}

// TestPrivilegedAgentInOtherMountNamespace runs the plugin in a mount
// namespace whose netns path the agent cannot see (issue 17 item 6): the
// agent opens it through the caller's /proc/PID/root, so ADD, CHECK and
// DEL work and the container gets traffic.
func TestPrivilegedAgentInOtherMountNamespace(t *testing.T) {
	requireRoot(t)
	c := agenttest.NewCluster(t, "10.78.0.0/16")
	h := c.StartHost("node1", "10.200.0.1/24")
	peer := h.Attach("net1")
	listenIn(t, peer.NSPath, peer.IP())

	dir := filepath.Join(c.Dir, "runtime-netns")
	holder := privateNetNS(t, dir)
	nsPath := filepath.Join(dir, "ns")                                   // as the runtime sees it
	seen := filepath.Join("/proc", strconv.Itoa(holder), "root", nsPath) // the same, from here
	cid := agenttest.RandName("cid")
	plugin := func(cmd string) ([]byte, error) {
		p := exec.Command("nsenter", "-t", strconv.Itoa(holder), "-m", "--", filepath.Join(c.Bin, "tabby-cni"))
		p.Env = []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + cid, "CNI_NETNS=" + nsPath, "CNI_IFNAME=eth0", "CNI_PATH=" + c.CNIDir()}
		p.Stdin = bytes.NewReader(h.NetConf("net1", "1.1.0"))
		var stderr bytes.Buffer
		p.Stderr = &stderr
		b, err := p.Output()
		if err != nil {
			return b, fmt.Errorf("%s: %v: %s %s", cmd, err, b, stderr.String())
		}
		return b, nil
	}

	out, err := plugin("ADD")
	if err != nil {
		t.Fatalf("ADD from another mount namespace: %v", err)
	}
	res, err := cni.ParseResult(out, "1.1.0")
	if err != nil || len(res.IPs) == 0 {
		t.Fatalf("ADD result %s: %v", out, err)
	}
	ip, _ := netip.AddrFromSlice(res.IPs[0].Address.IP)
	ip = ip.Unmap()
	if !netip.MustParsePrefix("10.78.0.0/16").Contains(ip) {
		t.Fatalf("container address %s: want one in 10.78.0.0/16", ip)
	}
	if len(res.Interfaces) < 2 || res.Interfaces[1].Sandbox != nsPath {
		t.Fatalf("result interfaces %+v: want the container's sandbox %s, as the runtime named it", res.Interfaces, nsPath)
	}
	if err := dialFrom(seen, peer.IP()); err != nil {
		t.Fatalf("container %s → %s: %v", ip, peer.IP(), err)
	}
	if _, err := plugin("CHECK"); err != nil {
		t.Fatalf("CHECK from another mount namespace: %v", err)
	}
	if _, err := plugin("DEL"); err != nil {
		t.Fatalf("DEL from another mount namespace: %v", err)
	}
	if out, _ := exec.Command("ip", "-n", h.NS, "link", "show", endpoint.HostIfName(cid, "eth0")).CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Fatalf("host veth still exists after DEL: %s", out)
	}
	if out, err := exec.Command("nsenter", "--net="+seen, "ip", "link", "show", "eth0").CombinedOutput(); err == nil {
		t.Fatalf("container interface eth0 still exists after DEL: %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := ipam.New(c.Store, nil).HandleAddrs(ctx, ipam.HandleID("net1", cid, "eth0"))
	if err != nil || len(addrs) != 0 {
		t.Fatalf("handle still holds %v (%v) after DEL", addrs, err)
	}
}
