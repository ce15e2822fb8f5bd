package lab

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/lab/labtest"
	"github.com/tabbynet/tabby/internal/testenv"
)

// The privileged tests run the real binaries: they are built once into a
// temporary directory, removed when the tests end.

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.Privileged(t)
	testenv.NeedTool(t, "ip")
}

func testBinaries(t testing.TB) string { return labtest.Binaries(t) }

// uniqueName is prefix plus 4 random hex digits: labs of concurrent test
// runs never share a name.
func uniqueName(prefix string) string { return labtest.Name(prefix) }

func testLogger(t testing.TB) *slog.Logger { return labtest.Logger(t, slog.LevelWarn) }

// testDNS runs `tabby dns` on the master as `tabby lab up` does.
var testDNS = &DNSConfig{Args: func(ip netip.Addr, datastore, mesos string) []string {
	return []string{"dns", "--listen", netip.AddrPortFrom(ip, 53).String(), "--http-listen", netip.AddrPortFrom(ip, 8123).String(),
		"--mesos-master", mesos, "--datastore", datastore, "--upstream="}
}}

// upLab brings a lab up under the default state root and removes it when
// the test ends, checking that nothing is left behind.
func upLab(t testing.TB, cfg Config) *Lab {
	t.Helper()
	cfg.BinDir = testBinaries(t)
	cfg.ReadyTimeout = 60 * time.Second
	cfg.Logger = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := Up(ctx, cfg)
	if err != nil {
		assertNoLeftovers(t, cfg.Name, cfg.WithDefaults().StateRoot, nil)
		t.Fatal(err)
	}
	t.Cleanup(func() { downLab(t, l) })
	return l
}

// downLab removes a lab (if it still exists) and checks for leftovers.
func downLab(t testing.TB, l *Lab) {
	t.Helper()
	procs := labProcs(l.Name())
	if _, err := os.Stat(l.Dir()); err == nil || len(procs) > 0 {
		if err := Down(context.Background(), l.root, l.Name(), nil); err != nil {
			t.Errorf("down %s: %v", l.Name(), err)
		}
	}
	assertNoLeftovers(t, l.Name(), l.root, procs)
}

// labProcs are the processes inside the lab's namespaces now.
func labProcs(name string) []proc {
	nss, _ := labNamespaces(name)
	inodes := map[uint64]bool{}
	for _, ns := range nss {
		if ino, err := nsInode(nsPath(ns)); err == nil {
			inodes[ino] = true
		}
	}
	return procsInNamespaces(inodes)
}

// assertNoLeftovers checks that lab name left no namespace, link,
// process, mount or file behind.
func assertNoLeftovers(t testing.TB, name, root string, procs []proc) {
	t.Helper()
	if nss, _ := labNamespaces(name); len(nss) > 0 {
		t.Errorf("leftover namespaces: %v", nss)
	}
	if _, err := os.Stat(stateDir(root, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover state directory %s (stat: %v)", stateDir(root, name), err)
	}
	if ds := netnsEtcDirs(name); len(ds) > 0 {
		t.Errorf("leftover /etc/netns directories: %v", ds)
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, mp := range parseMountPoints(string(data)) {
			if strings.Contains(mp, NamespacePrefix(name)) || strings.HasPrefix(mp, stateDir(root, name)) {
				t.Errorf("leftover mount %s", mp)
			}
		}
	}
	for _, p := range procs {
		if p.alive() {
			t.Errorf("leftover process %d", p.PID)
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, name+"-") {
				t.Errorf("leftover link %s in the root namespace", i.Name)
			}
		}
	}
}

// serveIn listens on port 0 of every address inside namespace ns and
// accepts (and closes) connections until the test ends.
func serveIn(t *testing.T, ns string) int {
	t.Helper()
	ln, err := ListenIn(ns, "tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// reach checks that a TCP connection from namespace ns to addr gets the
// server's greeting, retrying until a deadline.
func reach(t *testing.T, ns string, addr netip.AddrPort) {
	t.Helper()
	var last error
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := DialIn(ctx, ns, "tcp4", addr.String())
		cancel()
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			b, rerr := io.ReadAll(c)
			c.Close()
			if rerr == nil && string(b) == "hi\n" {
				return
			}
			err = rerr
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s cannot reach %s: %v", ns, addr, last)
}

// mustRun starts a container (running `sleep infinity` unless spec says
// otherwise) and fails the test if it cannot.
func mustRun(t testing.TB, l *Lab, spec RunSpec) *Container {
	t.Helper()
	if spec.Command == nil {
		spec.Command = []string{"sleep", "infinity"}
	}
	c, err := l.Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
