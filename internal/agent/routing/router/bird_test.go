package router_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing/routingtest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/testenv"
)

// birdConf peers BIRD (AS 65000, the hosts' gateway 192.0.2.1) with two
// hosts over eBGP with a TCP-MD5 password, exports what it learns to its
// kernel (so it forwards between them), and originates one prefix inside
// the pool and one outside.
const birdConf = `log stderr all;
router id 192.0.2.1;
protocol device { scan time 10; }
protocol kernel { ipv4 { import none; export all; }; }
protocol static {
	ipv4;
	route 10.244.250.0/24 blackhole;
	route 198.51.100.0/24 blackhole;
}
template bgp host {
	local 192.0.2.1 as 65000;
	password "tabby-md5";
	graceful restart on;
	ipv4 { import all; export all; };
}
protocol bgp h1 from host { neighbor 192.0.2.11 as 64512; }
protocol bgp h2 from host { neighbor 192.0.2.12 as 64513; }
`

// startBIRD runs bird in ns with conf; it is killed (by PID) in Cleanup.
// It returns the control socket.
func startBIRD(t *testing.T, ns, dir, conf string) string {
	t.Helper()
	bird := testenv.NeedTool(t, "bird")
	testenv.NeedTool(t, "birdc")
	confPath := filepath.Join(dir, "bird.conf")
	sock := filepath.Join(dir, "bird.ctl")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns, bird, "-f", "-c", confPath, "-s", sock, "-P", filepath.Join(dir, "bird.pid"))
	cmd.Stdout, cmd.Stderr = syncBuffer{&mu, &log}, syncBuffer{&mu, &log}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bird: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("bird log:\n%s", log.String())
			mu.Unlock()
		}
	})
	return sock
}

func birdc(t *testing.T, sock string, args ...string) string {
	t.Helper()
	out, err := exec.Command("birdc", append([]string{"-s", sock}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("birdc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPrivilegedBIRD: GoBGP sessions with BIRD 2 as an eBGP peer (mesh
// off, TCP-MD5): BIRD holds every host's blocks with the host as next hop,
// the hosts learn BIRD's prefix in the pool (and not the one outside it),
// and containers on the two hosts reach each other through BIRD.
func TestPrivilegedBIRD(t *testing.T) {
	c := newCluster(t)
	off := false
	c.create(ipPool("default", "10.244.0.0/16", "Never", "Never"),
		&api.BGPConfiguration{ObjectMeta: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off}},
		&api.BGPPeer{ObjectMeta: api.ObjectMeta{Name: "tor"}, Spec: api.BGPPeerSpec{PeerIP: "192.0.2.1", ASNumber: 65000,
			Password: &api.BGPPassword{Value: "tabby-md5"}}})
	r := routingtest.NewNS(t, "tbyrr-"+c.s)
	c.attach(r, "r", "192.0.2.1/24")
	routingtest.Sysctl(t, r, "net.ipv4.ip_forward", "1")
	sock := startBIRD(t, r, c.dir, birdConf)

	h1 := c.addHost("h1", "192.0.2.11/24", nil)
	as := api.ASNumber(64513)
	h2 := c.addHost("h2", "192.0.2.12/24", func(n *api.Node) { n.Spec.BGP.ASNumber = &as })
	for _, h := range []*host{h1, h2} {
		c.start(h, hostConfig{})
	}
	n1, a1 := c.container(h1)
	n2, a2 := c.container(h2)

	deadline := time.Now().Add(clusterWait)
	for {
		out := birdc(t, sock, "show", "route")
		if strings.Contains(out, blockOf(a1).String()) && strings.Contains(out, blockOf(a2).String()) {
			for _, want := range []string{"via 192.0.2.11", "via 192.0.2.12"} {
				if !strings.Contains(out, want) {
					t.Errorf("BIRD's table lacks %q:\n%s", want, out)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BIRD's table does not hold both hosts' blocks:\n%s\n%s", out, birdc(t, sock, "show", "protocols", "all"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.waitRoute(h1, "10.244.250.0/24 via 192.0.2.1", true)
	c.waitRoute(h1, blockOf(a2).String()+" via", true)
	if out := c.routes(h1); strings.Contains(out, "198.51.100.0") {
		t.Errorf("h1 installed a learned route outside the pools:\n%s", out)
	}
	c.reach(n1, n2, a2)
	c.reach(n2, n1, a1)
	st, err := c.status(h1)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 1 || st.Peers[0].Type != "global" || st.Peers[0].State != "up" {
		t.Errorf("h1 peers %+v, want the global peer up", st.Peers)
	}
}
