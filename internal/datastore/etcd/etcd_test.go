package etcd_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/datastoretest"
	"github.com/tabbynet/tabby/internal/datastore/embedded"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
)

// harness runs every subtest against one embedded server (starting one
// per subtest costs a second each); keys are unique per subtest.
func harness(t *testing.T, srv *embedded.Server, cfg etcd.Config) datastoretest.Harness {
	return datastoretest.Harness{
		Unique: true,
		New: func(t *testing.T) datastore.Store {
			s, err := etcd.New(cfg)
			if err != nil {
				t.Fatalf("etcd.New: %v", err)
			}
			return s
		},
		Compact: func(t *testing.T, s datastore.Store, rev int64) {
			if err := s.(*etcd.Store).Compact(context.Background(), rev); err != nil {
				t.Fatalf("Compact(%d): %v", rev, err)
			}
		},
		Break: func(t *testing.T, _ datastore.Store) { etcdtest.Restart(t, srv) },
	}
}

func TestContract(t *testing.T) {
	srv, cfg := etcdtest.NewServer(t)
	datastoretest.Run(t, harness(t, srv, cfg))
}

func TestClientContract(t *testing.T) {
	srv, cfg := etcdtest.NewServer(t)
	datastoretest.RunClient(t, harness(t, srv, cfg))
}

func TestContractUnixSocket(t *testing.T) {
	_, cfg := etcdtest.NewServerWith(t, etcdtest.Options{Unix: true})
	if !strings.HasPrefix(cfg.Endpoints[0], "unix:///") {
		t.Fatalf("endpoint: got %s, want unix:///…", cfg.Endpoints[0])
	}
	s, err := etcd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rev, err := s.Create(ctx, "/unix/a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "/unix/a", []byte("2"), rev); err != nil {
		t.Fatal(err)
	}
}

func TestNewUnavailable(t *testing.T) {
	// A listener that never answers (accepts, then says nothing).
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	sock := "unix://" + t.TempDir() + "/none.sock"
	tests := []struct {
		name      string
		endpoints []string
		want      string
	}{
		{"silent", []string{"http://" + silent.Addr().String()},
			"datastore unavailable: no etcd answered at http://" + silent.Addr().String() + " within 500ms"},
		{"closed port", []string{closed},
			"datastore unavailable: no etcd answered at " + closed + " within 500ms (" + closed + ": connection refused)"},
		{"missing unix socket", []string{sock},
			"datastore unavailable: no etcd answered at " + sock + " within 500ms (" + sock + ": no such file or directory)"},
		{"two endpoints", []string{closed, "http://" + silent.Addr().String()},
			"datastore unavailable: no etcd answered at " + closed + ", http://" + silent.Addr().String() + " within 500ms (" + closed + ": connection refused)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := etcd.New(etcd.Config{Endpoints: tc.endpoints, DialTimeout: 500 * time.Millisecond})
			if !errors.Is(err, datastore.ErrUnavailable) {
				t.Fatalf("New: got %v, want %v", err, datastore.ErrUnavailable)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("New error:\ngot  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  etcd.Config
		want string // substring of the error; "" for valid
	}{
		{"http", etcd.Config{Endpoints: []string{"http://10.0.0.1:2379"}}, ""},
		{"https", etcd.Config{Endpoints: []string{"https://etcd.example:2379"}}, ""},
		{"unix", etcd.Config{Endpoints: []string{"unix:///run/tabby/etcd.sock"}}, ""},
		{"none", etcd.Config{}, "none given"},
		{"bad scheme", etcd.Config{Endpoints: []string{"ftp://10.0.0.1:21"}}, `"ftp://10.0.0.1:21": scheme`},
		{"no port", etcd.Config{Endpoints: []string{"http://10.0.0.1"}}, "want http://host:port"},
		{"bare host", etcd.Config{Endpoints: []string{"10.0.0.1:2379"}}, "10.0.0.1:2379"},
		{"relative unix", etcd.Config{Endpoints: []string{"unix://etcd.sock"}}, "absolute"},
		{"cert without key", etcd.Config{Endpoints: []string{"https://a:1"}, CertFile: "c.pem"}, "set both"},
		{"negative timeout", etcd.Config{Endpoints: []string{"http://a:1"}, DialTimeout: -1}, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestNewQuiet checks that a failing New prints nothing on stderr (no
// gRPC or zap noise): its error is the whole story.
func TestNewQuiet(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup2(int(f.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	_, newErr := etcd.New(etcd.Config{Endpoints: []string{"http://127.0.0.1:1", "unix:///nonexistent/etcd.sock"}, DialTimeout: time.Second})
	time.Sleep(200 * time.Millisecond) // let any background logger write
	if err := syscall.Dup2(saved, 2); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Close(saved)
	if newErr == nil {
		t.Fatal("New: got no error")
	}
	out, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Errorf("New wrote to stderr:\n%s", out)
	}
}
