package runtimes_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/lab/labtest"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

// TestPrivilegedPodmanAcrossHosts runs podman on two lab hosts: a
// container on one reaches a container on the other over Tabby's routes.
func TestPrivilegedPodmanAcrossHosts(t *testing.T) {
	testenv.Privileged(t)
	bin := labtest.Binaries(t)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Config{Name: labtest.Name("pm"), Nodes: 2, BinDir: bin, StateRoot: root,
		Pool: netip.MustParsePrefix("10.81.0.0/16"), Logger: labtest.Logger(t, 0)})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() { _ = lab.Down(context.Background(), root, l.Name(), nil) })
	var pods []*Podman
	for _, n := range l.Nodes()[len(l.Nodes())-2:] {
		pods = append(pods, NewPodman(t, netns.Path(n.Namespace), n.Socket, filepath.Join(bin, "tabby-cni"), "tabby"))
	}
	pods[0].Run("run", "-d", "--name", "web", "--network", "tabby", podmanImage, "sh", "-c", webCmd)
	ip := pods[0].IP("web", "tabby")
	eventually(t, "a container on the second host reaches web on the first", func() error {
		out, err := pods[1].Try("run", "--rm", "--network", "tabby", podmanImage, "sh", "-c", httpGet(ip, "80"))
		if err == nil && !strings.Contains(out, "hello-from-web") {
			err = errNoAnswer
		}
		return err
	})
}

const errNoAnswer = docError("no hello-from-web in the answer")
