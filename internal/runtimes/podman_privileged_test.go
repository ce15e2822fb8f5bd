package runtimes_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/testenv"
)

func TestPrivilegedPodman(t *testing.T) {
	testenv.Privileged(t)
	c := agenttest.NewCluster(t, "10.79.0.0/16")
	h := c.StartHost("node1", "10.201.0.1/24")
	p := NewPodman(t, c, h, "tabby")

	p.Run("run", "-d", "--name", "web", "--network", "tabby", "-p", "8080:80", podmanImage,
		"sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www")
	ip := p.IP("web", "tabby")
	if a, err := netip.ParseAddr(ip); err != nil || !netip.MustParsePrefix("10.79.0.0/16").Contains(a) {
		t.Fatalf("web's address %q: want one in the pool 10.79.0.0/16", ip)
	}
	out := p.Run("run", "--rm", "--network", "tabby", podmanImage, "sh", "-c", httpGet(ip, "80"))
	if !strings.Contains(out, "hello-from-web") {
		t.Fatalf("client → web: got %q, want hello-from-web", out)
	}
}
