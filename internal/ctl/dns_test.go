package ctl

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

func TestDNSCommandBadInput(t *testing.T) {
	badJSON := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(badJSON, []byte(`{"IPSources": ["netinfo", "rkt"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"listen without port", []string{"--listen", "127.0.0.1"}, `--listen "127.0.0.1": address 127.0.0.1: missing port in address`},
		{"listen port", []string{"--listen", "127.0.0.1:dns"}, `--listen "127.0.0.1:dns": "dns" is not a port`},
		{"ip source", []string{"--ip-sources", "host,rkt"}, `IPSources: "rkt" is not an IP source`},
		{"upstream", []string{"--upstream", "dns.google"}, `Resolvers: "dns.google" is not an IP address or IP:port`},
		{"master", []string{"--mesos-master", "ftp://10.0.0.1"}, `Masters: "ftp://10.0.0.1" must be an http or https URL`},
		{"domain", []string{"--domain", "a..b"}, `Domain: "a..b" is not a domain name`},
		{"config file", []string{"--config", badJSON}, `IPSources: "rkt" is not an IP source`},
		{"missing config", []string{"--config", "/nonexistent/mesos-dns.json"}, "read --config"},
		{"log level", []string{"--log-level", "loud"}, `--log-level "loud"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"dns", "--no-datastore", "--http-listen", "127.0.0.1:0"}, tc.args...)
			code := Main(args, strings.NewReader(""), &stdout, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want a failure saying %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// freeDNSPort finds a port free for both UDP and TCP on loopback.
func freeDNSPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// `tabby dns` against `tabby datastore run`: an endpoint written to the
// datastore resolves; SIGTERM stops the daemon cleanly.
func TestDNSCommandEndToEnd(t *testing.T) {
	bin := tabbyBinary(t)
	d := startDatastore(t, bin, "--data-dir", filepath.Join(t.TempDir(), "etcd"), "--listen", "http://127.0.0.1:0", "--name", "dnstest")
	dnsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeDNSPort(t)))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeDNSPort(t)))

	cmd := exec.Command(bin, "dns", "--datastore", d.url, "--listen", dnsAddr, "--http-listen", httpAddr, "--upstream", "")
	stderr := &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // our own child, by PID
			<-done
		}
	})
	logs := func() string {
		stderr.mu.Lock()
		defer stderr.mu.Unlock()
		return stderr.w.String()
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(metrics(httpAddr), "tabby_dns_ready 1") {
		if time.Now().After(deadline) {
			t.Fatalf("tabby dns not ready within a minute; log:\n%s", logs())
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := datastore.NewClient(connect(t, d.url))
	node := &api.Node{ObjectMeta: api.ObjectMeta{Name: "agent-1"}, Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: "10.0.1.11/24"}}}
	ep := &api.WorkloadEndpoint{
		ObjectMeta: api.ObjectMeta{Name: "agent-1-web-eth0", Namespace: "shop"},
		Spec: api.WorkloadEndpointSpec{Orchestrator: "cni", Node: "agent-1", Workload: "web", Endpoint: "eth0",
			IPNetworks: []string{"172.29.1.20/32"}, Profiles: []string{"calico"}},
	}
	for _, r := range []api.Resource{node, ep} {
		if _, err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	client := &mdns.Client{Timeout: 2 * time.Second}
	for {
		resp, _, err := client.Exchange(new(mdns.Msg).SetQuestion("web.shop.mesos.", mdns.TypeA), dnsAddr)
		if err == nil && len(resp.Answer) == 1 && resp.Answer[0].(*mdns.A).A.String() == "172.29.1.20" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web.shop.mesos. does not resolve: %v, %v; log:\n%s", resp, err, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tabby dns after SIGTERM: %v, want exit status 0; log:\n%s", err, logs())
		}
	case <-time.After(time.Minute):
		t.Fatalf("tabby dns still running a minute after SIGTERM")
	}
	if l := logs(); !strings.Contains(l, "component=dns") || !strings.Contains(l, `msg=stopped`) || strings.Contains(l, "level=ERROR") {
		t.Errorf("log:\n%s", l)
	}
	d.stop(t)
}

func metrics(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
