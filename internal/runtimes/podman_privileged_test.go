package runtimes_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/agent/agenttest"
	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

const webCmd = "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"

// TestPrivilegedPodman runs podman's documented commands (docs/runtimes.md)
// against one agent: a pool address, container to container traffic, a
// host port mapping, endpoint names from CNI_ARGS, a deny policy, and no
// leak after restart and rm.
func TestPrivilegedPodman(t *testing.T) {
	testenv.Privileged(t)
	c := agenttest.NewCluster(t, "10.79.0.0/16")
	h := c.StartHost("node1", "10.201.0.1/24")
	p := NewPodman(t, h.NSPath, h.Socket, filepath.Join(c.Bin, "tabby-cni"), "tabby")

	p.Run("run", "-d", "--name", "web", "--network", "tabby", "-p", "8080:80", podmanImage, "sh", "-c", webCmd)
	ip := p.IP("web", "tabby")
	firstIP := ip
	if a, err := netip.ParseAddr(ip); err != nil || !netip.MustParsePrefix("10.79.0.0/16").Contains(a) {
		t.Fatalf("web's address %q: want one in the pool 10.79.0.0/16", ip)
	}
	get := func() (string, error) {
		return p.Try("run", "--rm", "--network", "tabby", podmanImage, "sh", "-c", httpGet(ip, "80"))
	}
	if out, err := get(); err != nil || !strings.Contains(out, "hello-from-web") {
		t.Fatalf("client → web: got %q (%v), want hello-from-web", out, err)
	}

	// The endpoint is named after the container (podman's K8S_POD_NAME).
	s := wantState(t, c, h, 1, "web running")
	if w := s.Endpoints[0]; w.Spec.Workload != "web" || !strings.Contains(w.Name, "-web-") {
		t.Fatalf("web's endpoint %q has workload %q; want the container name web", w.Name, w.Spec.Workload)
	}

	// -p 8080:80: the host's port reaches web (runtimeConfig.portMappings).
	if out, err := hostGet(h, "8080"); err != nil || !strings.Contains(out, "hello-from-web") {
		t.Fatalf("host port 8080 → web: got %q (%v), want hello-from-web", out, err)
	}

	// A policy that selects web and allows nothing in blocks the client.
	c.Apply(&api.GlobalNetworkPolicy{ObjectMeta: api.ObjectMeta{Name: "deny-web"},
		Spec: api.GlobalNetworkPolicySpec{Selector: "projectcalico.org/orchestrator == 'cni'", Types: []string{"Ingress"}}})
	eventually(t, "deny policy blocks client → web", func() error {
		if out, err := get(); err == nil && strings.Contains(out, "hello-from-web") {
			return errors.New("client still reaches web")
		}
		return nil
	})
	deletePolicy(t, c, "deny-web")
	eventually(t, "client reaches web again", func() error {
		out, err := get()
		if err == nil && !strings.Contains(out, "hello-from-web") {
			err = fmt.Errorf("got %q", out)
		}
		return err
	})

	// restart: a new attachment replaces the old, nothing is left over.
	p.Run("restart", "--time", "0", "web")
	wantState(t, c, h, 1, "after podman restart")
	ip = p.IP("web", "tabby")
	if out, err := get(); err != nil || !strings.Contains(out, "hello-from-web") {
		t.Fatalf("client → restarted web at %s: got %q (%v)", ip, out, err)
	}
	p.Run("rm", "--force", "--time", "0", "web")
	wantState(t, c, h, 0, "after podman rm")
	checkDocRan(t, "podman", &p.ran, firstIP)
}

// hostGet fetches / from the host's own address and port, from inside
// the host's namespace.
func hostGet(h *agenttest.Host, port string) (string, error) {
	var out []byte
	err := netns.Do(h.NSPath, func() error {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(h.NodeIP.Addr().String(), port), 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		out, err = io.ReadAll(conn)
		return err
	})
	return string(out), err
}

func deletePolicy(t *testing.T, c *agenttest.Cluster, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Client.Delete(ctx, "GlobalNetworkPolicy", "", name, ""); err != nil {
		t.Fatalf("delete policy %s: %v", name, err)
	}
}
