package lab

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// TestWritePKI: the CA signs a server certificate valid for the master's
// address and the socket's name and client certificates valid for client
// auth only; keys are private; the CA's key is nowhere.
func TestWritePKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	master := netip.MustParseAddr("10.101.7.2")
	spec := pkiSpec{Lab: "t1", ServerIPs: []netip.Addr{master}, ServerNames: []string{etcdSocket}, Clients: []string{"root", "agent-h1"}, Now: now}
	if err := writePKI(dir, spec); err != nil {
		t.Fatal(err)
	}
	l := layout{filepath.Dir(dir)}
	ca := readCert(t, l.tlsFiles("root").CA)
	if !ca.IsCA || ca.Subject.CommonName != "tabby lab t1 CA" {
		t.Errorf("CA: got IsCA %v, CN %q; want a CA named after the lab", ca.IsCA, ca.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	server := readCert(t, l.tlsFiles(tlsServer).Cert)
	for _, name := range []string{master.String(), etcdSocket} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %q: %v", name, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{DNSName: "10.101.7.3", Roots: roots}); err == nil {
		t.Error("server certificate verifies for another address")
	}
	for _, c := range spec.Clients {
		cert := readCert(t, l.tlsFiles(c).Cert)
		if cert.Subject.CommonName != c {
			t.Errorf("client %s: got CN %q", c, cert.Subject.CommonName)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client %s: %v", c, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("client %s: its certificate also serves", c)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name(), "-key.pem") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if strings.Contains(string(data), "PRIVATE KEY") != strings.HasSuffix(e.Name(), "-key.pem") {
			t.Errorf("%s: a private key outside a -key.pem file, or a key file without one", e.Name())
		}
	}
	want := []string{"agent-h1-key.pem", "agent-h1.pem", "ca.pem", "etcd-key.pem", "etcd.pem", "root-key.pem", "root.pem"}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("files: got %v, want %v (no CA key)", names, want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("tls directory: got %v (%v), want mode 0700", fi.Mode().Perm(), err)
	}
	// Existing files are never overwritten.
	if err := writePKI(dir, spec); err == nil {
		t.Error("writePKI over an existing directory: got no error")
	}
}

// TestLabPKI: every agent node, the DNS server and the root get a client
// certificate; the server is valid for the master and the socket.
func TestLabPKI(t *testing.T) {
	cfg := Config{Name: "t2", Nodes: 2, BinDir: "/bin", TLS: true}.WithDefaults()
	plan, err := MakePlan(cfg, 7, "id")
	if err != nil {
		t.Fatal(err)
	}
	st := &State{Plan: *plan, TLS: true}
	s := labPKI(st, time.Now())
	if want := []string{TLSRootClient, TLSDNSClient, "agent-master", "agent-h1", "agent-h2"}; !slices.Equal(s.Clients, want) {
		t.Errorf("clients: got %v, want %v", s.Clients, want)
	}
	if !slices.Contains(s.ServerIPs, plan.Master.IP.Addr()) || !slices.Contains(s.ServerNames, etcdSocket) {
		t.Errorf("server names: got %v %v, want the master's address and %s", s.ServerIPs, s.ServerNames, etcdSocket)
	}
	if got, want := st.DatastoreURL(), "https://10.101.7.2:2379"; got != want {
		t.Errorf("DatastoreURL: got %s, want %s", got, want)
	}
	st.TLS = false
	if got, want := st.DatastoreURL(), "http://10.101.7.2:2379"; got != want {
		t.Errorf("DatastoreURL without TLS: got %s, want %s", got, want)
	}
}

// TestPrivilegedTLS: a TLS lab serves its agents, DNS and the root
// namespace with client certificates only: containers get addresses,
// the lab's store works, and a client without a certificate (or without
// TLS) is refused.
func TestPrivilegedTLS(t *testing.T) {
	requireRoot(t)
	l := upLab(t, Config{Name: uniqueName("ts"), Nodes: 2, TLS: true, DNS: testDNS})
	if !strings.HasPrefix(l.ClientURL(), "unixs://") || !strings.HasPrefix(l.DatastoreURL(), "https://") {
		t.Errorf("URLs: got %s and %s, want unixs:// and https://", l.ClientURL(), l.DatastoreURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := l.Run(ctx, RunSpec{Name: "a", Node: "h1", Command: []string{"sleep", "infinity"}})
	if err != nil {
		t.Fatalf("run a container (the agent reaches the datastore with its certificate): %v", err)
	}
	if !l.State().Pool.Contains(c.IP()) {
		t.Errorf("container address %s: not in the pool %s", c.IP(), l.State().Pool)
	}
	s, err := l.Store()
	if err != nil {
		t.Fatalf("the lab's own client: %v", err)
	}
	kvs, _, err := s.List(ctx, "/tabby/v1/nodes/")
	s.Close()
	if err != nil || len(kvs) != 3 {
		t.Errorf("nodes: got %d (%v), want 3 (master, h1, h2)", len(kvs), err)
	}
	f, ok := l.ClientTLS()
	if !ok {
		t.Fatal("ClientTLS: got false in a TLS lab")
	}
	sock := strings.TrimPrefix(l.ClientURL(), "unixs://")
	refused := []struct {
		name string
		cfg  etcd.Config
	}{
		{"no client certificate", etcd.Config{Endpoints: []string{l.ClientURL()}, CAFile: f.CA}},
		{"no TLS", etcd.Config{Endpoints: []string{"unix://" + sock}}},
		{"another holder's key", etcd.Config{Endpoints: []string{l.ClientURL()}, CAFile: f.CA, CertFile: f.Cert, KeyFile: l.l.tlsFiles(TLSDNSClient).Key}},
	}
	for _, tc := range refused {
		tc.cfg.DialTimeout = 2 * time.Second
		s, err := etcd.New(tc.cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: got a connection, want it refused", tc.name)
		} else if !errors.Is(err, datastore.ErrUnavailable) && !strings.Contains(err.Error(), "private key does not match") {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
	// The DNS server reads the datastore with its own certificate: the
	// container's address gets its PTR record.
	master := l.State().Master
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return DialIn(ctx, master.Namespace, "udp", netip.AddrPortFrom(master.IP.Addr(), 53).String())
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		names, err := r.LookupAddr(qctx, c.IP().String())
		qcancel()
		if err == nil && len(names) > 0 {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(l.Dir(), MasterNode, "dns.log"))
			t.Fatalf("no PTR record for %s from the DNS server (%v); its log:\n%s", c.IP(), err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
