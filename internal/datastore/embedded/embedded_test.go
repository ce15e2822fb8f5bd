package embedded_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/embedded"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  embedded.Config
		want string // substring of the error; "" when valid
	}{
		{"defaults", embedded.Config{DataDir: "/d"}, ""},
		{"unix", embedded.Config{DataDir: "/d", ListenClient: "unix:///run/tabby/etcd.sock"}, ""},
		{"wildcard listen", embedded.Config{DataDir: "/d", ListenClient: "http://0.0.0.0:2379"}, ""},
		{"cluster", embedded.Config{DataDir: "/d", Name: "a", ListenPeer: "http://10.0.0.1:2380",
			InitialCluster: "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380"}, ""},
		{"https", embedded.Config{DataDir: "/d", ListenClient: "https://127.0.0.1:2379", CertFile: "c", KeyFile: "k"}, ""},
		{"revision compaction", embedded.Config{DataDir: "/d", AutoCompactionMode: "revision"}, ""},
		{"two client URLs", embedded.Config{DataDir: "/d", ListenClient: "http://127.0.0.1:2379,unix:///run/tabby/etcd.sock"}, ""},
		{"two client URLs with port 0", embedded.Config{DataDir: "/d", ListenClient: "http://127.0.0.1:0,http://10.0.0.1:2379"}, "port 0 needs a single URL"},
		{"no data dir", embedded.Config{}, "dataDir: required"},
		{"bad name", embedded.Config{DataDir: "/d", Name: "a=b"}, `name "a=b"`},
		{"bad scheme", embedded.Config{DataDir: "/d", ListenClient: "tcp://127.0.0.1:1"}, `listenClient "tcp://127.0.0.1:1": scheme`},
		{"host name", embedded.Config{DataDir: "/d", ListenClient: "http://etcd.example:2379"}, "must be an IP address"},
		{"no port", embedded.Config{DataDir: "/d", ListenClient: "http://127.0.0.1"}, "want http://IP:PORT"},
		{"relative unix", embedded.Config{DataDir: "/d", ListenClient: "unix://etcd.sock"}, "absolute"},
		{"https without cert", embedded.Config{DataDir: "/d", ListenClient: "https://127.0.0.1:2379"}, "needs certFile and keyFile"},
		{"cert without key", embedded.Config{DataDir: "/d", CertFile: "c"}, "set both or neither"},
		{"cert auth without CA", embedded.Config{DataDir: "/d", ClientCertAuth: true}, "needs trustedCAFile"},
		{"cluster without self", embedded.Config{DataDir: "/d", Name: "a", ListenPeer: "http://10.0.0.1:2380",
			InitialCluster: "b=http://10.0.0.2:2380"}, `does not list this member "a"`},
		{"cluster without peer", embedded.Config{DataDir: "/d", InitialCluster: "tabby=http://10.0.0.2:2380"}, "listenPeer: required"},
		{"bad cluster entry", embedded.Config{DataDir: "/d", ListenPeer: "http://10.0.0.1:2380", InitialCluster: "tabby"}, "not name=peerURL"},
		{"wildcard peer", embedded.Config{DataDir: "/d", ListenPeer: "http://0.0.0.0:2380", InitialCluster: "tabby=http://10.0.0.1:2380"}, "advertisePeer: required"},
		{"bad state", embedded.Config{DataDir: "/d", ClusterState: "old"}, `clusterState "old"`},
		{"bad compaction mode", embedded.Config{DataDir: "/d", AutoCompactionMode: "never"}, `autoCompactionMode "never"`},
		{"bad retention", embedded.Config{DataDir: "/d", AutoCompactionRetention: "soon"}, `autoCompactionRetention "soon"`},
		{"negative quota", embedded.Config{DataDir: "/d", QuotaBackendBytes: -1}, "quotaBackendBytes -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Defaults().Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: got %v, want an error containing %q", err, tc.want)
			}
			if _, err := embedded.New(tc.cfg); err == nil {
				t.Errorf("New accepted a config Validate rejects")
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := embedded.Config{DataDir: "/d"}.Defaults()
	if c.Name != "tabby" || c.ListenClient != "http://127.0.0.1:2379" || c.ClusterState != "new" ||
		c.AutoCompactionMode != "periodic" || c.AutoCompactionRetention != "1h" || c.QuotaBackendBytes != 2<<30 {
		t.Errorf("Defaults: got %+v", c)
	}
	if !strings.HasPrefix(c.InitialCluster, "tabby=http://127.0.0.1:") {
		t.Errorf("Defaults InitialCluster: got %q, want this member alone", c.InitialCluster)
	}
	w := embedded.Config{DataDir: "/d", ListenClient: "http://0.0.0.0:2379"}.Defaults()
	if w.AdvertiseClient != "http://127.0.0.1:2379" {
		t.Errorf("wildcard listen: advertise got %q, want http://127.0.0.1:2379", w.AdvertiseClient)
	}
}

// records collects log records for checks on what a server logs.
type records struct {
	mu  sync.Mutex
	all []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.all {
		if rec.Level >= slog.LevelError {
			out = append(out, rec.Level.String()+" "+rec.Message)
		}
	}
	return out
}

// TestRestartKeepsData stops a server under an open watch and starts it
// again: the data is still there, the watch carries on, and stopping
// logged no error.
func TestRestartKeepsData(t *testing.T) {
	rec := &records{}
	warn := slog.LevelWarn
	srv, cfg := etcdtest.NewServerWith(t, etcdtest.Options{Config: func(c *embedded.Config) {
		c.Logger = slog.New(rec)
		c.EtcdLogLevel = &warn
		c.UnsafeNoFsync = false
	}})
	url := srv.ClientURL()
	s, err := etcd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rev, err := s.Create(ctx, "/restart/a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	w := s.Watch(ctx, "/restart/", rev+1)

	etcdtest.Restart(t, srv)
	if srv.ClientURL() != url {
		t.Errorf("ClientURL after restart: got %s, want %s", srv.ClientURL(), url)
	}
	kv, err := s.Get(ctx, "/restart/a")
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if string(kv.Value) != "1" || kv.Revision != rev {
		t.Errorf("after restart: got %q@%d, want %q@%d", kv.Value, kv.Revision, "1", rev)
	}
	rev2, err := s.Update(ctx, "/restart/a", []byte("2"), rev)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-w:
		if e.Type != datastore.EventPut || e.KV.Revision != rev2 {
			t.Errorf("watch after restart: got %+v, want the put at %d", e, rev2)
		}
	case <-ctx.Done():
		t.Fatal("no watch event after restart")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if errs := rec.errors(); len(errs) > 0 {
		t.Errorf("server logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

func TestRunStopsWithContext(t *testing.T) {
	srv, err := embedded.New(embedded.Config{
		DataDir:       filepath.Join(t.TempDir(), "etcd"),
		ListenClient:  "http://127.0.0.1:0",
		UnsafeNoFsync: true,
		Logger:        etcdtest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	// Wait until it serves.
	deadline := time.Now().Add(time.Minute)
	for {
		if u := srv.ClientURL(); !strings.HasSuffix(u, ":0") {
			s, err := etcd.New(etcd.Config{Endpoints: []string{u}, DialTimeout: 10 * time.Second})
			if err == nil {
				_ = s.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Run: server never served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v, want nil after ctx ended", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run still running a minute after ctx ended")
	}
}

func TestStartFailsOnBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv, err := embedded.New(embedded.Config{
		DataDir:      filepath.Join(t.TempDir(), "etcd"),
		ListenClient: "http://" + l.Addr().String(),
		Logger:       etcdtest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if err == nil {
		_ = srv.Stop()
		t.Fatal("Start on a busy port: got no error")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Start on a busy port: got %v, want it to say the address is in use", err)
	}
}

// TestTLS runs the server on https with client certificates required and
// checks who gets in.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	issue(t, ca, caKey, dir, "server", true)
	issue(t, ca, caKey, dir, "client", false)
	otherCA, otherKey := newCA(t)
	issue(t, otherCA, otherKey, dir, "stranger", false)

	srv, _ := etcdtest.NewServerWith(t, etcdtest.Options{Config: func(c *embedded.Config) {
		c.ListenClient = "https://127.0.0.1:0"
		c.CertFile = filepath.Join(dir, "server.pem")
		c.KeyFile = filepath.Join(dir, "server-key.pem")
		c.TrustedCAFile = filepath.Join(dir, "ca.pem")
		c.ClientCertAuth = true
	}})
	url := srv.ClientURL()
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("ClientURL: got %s, want https://127.0.0.1:PORT", url)
	}
	tests := []struct {
		name string
		cfg  etcd.Config
		want string // "" when the client gets in; else what the error says
	}{
		{"client certificate", etcd.Config{CAFile: filepath.Join(dir, "ca.pem"),
			CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem")}, ""},
		{"no client certificate", etcd.Config{CAFile: filepath.Join(dir, "ca.pem")},
			"TLS: the server rejected this client: certificate required"},
		{"certificate of another CA", etcd.Config{CAFile: filepath.Join(dir, "ca.pem"),
			CertFile: filepath.Join(dir, "stranger.pem"), KeyFile: filepath.Join(dir, "stranger-key.pem")},
			"TLS: the server rejected this client"},
		{"server not trusted", etcd.Config{
			CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem")},
			"TLS: x509: certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Endpoints = []string{url}
			tc.cfg.DialTimeout = 2 * time.Second
			s, err := etcd.New(tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				defer s.Close()
				if _, err := s.Create(context.Background(), "/tls/"+tc.name, []byte("1")); err != nil {
					t.Fatalf("Create: %v", err)
				}
				return
			}
			if err == nil {
				_ = s.Close()
				t.Fatal("New: got a connection, want it refused")
			}
			if !errors.Is(err, datastore.ErrUnavailable) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: got %q, want one line wrapping %v and saying %q", err, datastore.ErrUnavailable, tc.want)
			}
		})
	}
	// Missing files are named.
	_, err := etcd.New(etcd.Config{Endpoints: []string{url}, CAFile: filepath.Join(dir, "nope.pem")})
	if err == nil || !strings.Contains(err.Error(), "nope.pem") {
		t.Errorf("New with a missing CA file: got %v, want an error naming it", err)
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tabby test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

var serial int64 = 100

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, dir, name string, server bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", keyDER)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
