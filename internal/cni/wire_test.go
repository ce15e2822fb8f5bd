package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/cni/cnitest"
)

// hookHandler is a Handler whose methods run the hooks it has, and
// succeed otherwise; it records the requests it got.
type hookHandler struct {
	mu     sync.Mutex
	got    []*cni.Request
	add    func(context.Context, *cni.Request) (*types100.Result, error)
	other  func(context.Context, *cni.Request) error
	result *types100.Result
}

func (h *hookHandler) rec(r *cni.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, r)
}

func (h *hookHandler) last() *cni.Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) == 0 {
		return nil
	}
	return h.got[len(h.got)-1]
}

func (h *hookHandler) Add(ctx context.Context, r *cni.Request) (*types100.Result, error) {
	h.rec(r)
	if h.add != nil {
		return h.add(ctx, r)
	}
	return h.result, nil
}

func (h *hookHandler) run(ctx context.Context, r *cni.Request) error {
	h.rec(r)
	if h.other != nil {
		return h.other(ctx, r)
	}
	return nil
}

func (h *hookHandler) Del(ctx context.Context, r *cni.Request) error    { return h.run(ctx, r) }
func (h *hookHandler) Check(ctx context.Context, r *cni.Request) error  { return h.run(ctx, r) }
func (h *hookHandler) GC(ctx context.Context, r *cni.Request) error     { return h.run(ctx, r) }
func (h *hookHandler) Status(ctx context.Context, r *cni.Request) error { return h.run(ctx, r) }

var _ cni.Handler = (*hookHandler)(nil)

const mesosStdin = `{"name":"dcos","type":"tabby","ipam":{"type":"tabby-ipam"},"args":{"org.apache.mesos":{"network_info":{"name":"dcos","labels":{"labels":[{"key":"app","value":"web"}]},"port_mappings":[{"host_port":31000,"container_port":80,"protocol":"tcp"}],"ip_addresses":[{}]}}}}`

func newRequest(t *testing.T, cmd, stdin string) *cni.Request {
	t.Helper()
	conf, err := cni.ParseConfig([]byte(stdin))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	req := &cni.Request{
		Command: cmd, ContainerID: "5b8b6ab6-6f0a-4e56-9f5c-8d1d2a3c4e5f", NetNS: "/var/run/mesos/ns", IfName: "eth0",
		Path: "/opt/cni/bin", Mode: cni.ModeAttach, Config: json.RawMessage(stdin), NetConf: conf,
	}
	if cmd == cni.CmdAdd || cmd == cni.CmdDel || cmd == cni.CmdCheck {
		req.Identity, err = cni.IdentityFor(req)
		if err != nil {
			t.Fatalf("IdentityFor: %v", err)
		}
	}
	if cmd == cni.CmdGC {
		req.ValidAttachments = []cni.Attachment{{ContainerID: "c1", IfName: "eth0"}}
	}
	return req
}

func call(ctx context.Context, h cni.Handler, req *cni.Request) (*types100.Result, error) {
	switch req.Command {
	case cni.CmdAdd:
		return h.Add(ctx, req)
	case cni.CmdDel:
		return nil, h.Del(ctx, req)
	case cni.CmdCheck:
		return nil, h.Check(ctx, req)
	case cni.CmdGC:
		return nil, h.GC(ctx, req)
	case cni.CmdStatus:
		return nil, h.Status(ctx, req)
	}
	return nil, errors.New("unknown command " + req.Command)
}

func TestWireRoundTrip(t *testing.T) {
	h := &hookHandler{result: &types100.Result{
		CNIVersion: "1.0.0", // the server always answers 1.1.0
		IPs:        []*types100.IPConfig{{Address: net.IPNet{IP: net.IPv4(10, 65, 0, 5).To4(), Mask: net.CIDRMask(32, 32)}}},
	}}
	client := cni.NewClient(cnitest.Serve(t, h))
	for _, cmd := range []string{cni.CmdAdd, cni.CmdDel, cni.CmdCheck, cni.CmdGC, cni.CmdStatus} {
		t.Run(cmd, func(t *testing.T) {
			req := newRequest(t, cmd, mesosStdin)
			res, err := call(context.Background(), client, req)
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			if cmd == cni.CmdAdd {
				if res.CNIVersion != cni.WireVersion || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.65.0.5/32" {
					t.Errorf("ADD result = %+v; want version %s and 10.65.0.5/32", res, cni.WireVersion)
				}
			}
			got := h.last()
			// Config travels compacted; compare it as JSON.
			if !jsonEqual(t, req.Config, got.Config) {
				t.Errorf("Config = %s; want %s", got.Config, req.Config)
			}
			opts := []cmp.Option{cmpopts.IgnoreFields(cni.Request{}, "Config"), cmpopts.EquateEmpty(),
				cmp.AllowUnexported(cni.Bool{}), cmpopts.EquateComparable(netip.Addr{})}
			if diff := cmp.Diff(req, got, opts...); diff != "" {
				t.Errorf("request on the server (-sent +got):\n%s", diff)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return cmp.Equal(x, y)
}

func TestWireErrors(t *testing.T) {
	tests := []struct {
		name     string
		cmd      string
		add      func(context.Context, *cni.Request) (*types100.Result, error)
		other    func(context.Context, *cni.Request) error
		wantCode uint
		wantMsg  string
	}{
		{name: "coded error", cmd: cni.CmdAdd,
			add: func(context.Context, *cni.Request) (*types100.Result, error) {
				return nil, cni.Errorf(types.ErrTryAgainLater, "pool exhausted: %w", io.EOF)
			},
			wantCode: types.ErrTryAgainLater, wantMsg: "pool exhausted: EOF"},
		{name: "wrapped coded error", cmd: cni.CmdDel,
			other: func(context.Context, *cni.Request) error {
				return errors.Join(errors.New("context"), cni.Errorf(types.ErrUnknownContainer, "no such container"))
			},
			wantCode: types.ErrUnknownContainer, wantMsg: "no such container"},
		{name: "library error", cmd: cni.CmdCheck,
			other: func(context.Context, *cni.Request) error {
				return types.NewError(types.ErrInvalidNetNS, "bad netns", "/x")
			},
			wantCode: types.ErrInvalidNetNS, wantMsg: "bad netns"},
		{name: "plain error", cmd: cni.CmdGC,
			other:    func(context.Context, *cni.Request) error { return errors.New("etcd is down") },
			wantCode: types.ErrInternal, wantMsg: "etcd is down"},
		{name: "plain status error is not available", cmd: cni.CmdStatus,
			other:    func(context.Context, *cni.Request) error { return errors.New("datastore not ready") },
			wantCode: types.ErrPluginNotAvailable, wantMsg: "datastore not ready"},
		{name: "no result", cmd: cni.CmdAdd,
			add:      func(context.Context, *cni.Request) (*types100.Result, error) { return nil, nil },
			wantCode: types.ErrInternal, wantMsg: "no result"},
		{name: "panic", cmd: cni.CmdAdd,
			add:      func(context.Context, *cni.Request) (*types100.Result, error) { panic("boom") },
			wantCode: types.ErrInternal, wantMsg: "panic: boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &hookHandler{add: tc.add, other: tc.other}
			client := cni.NewClient(cnitest.Serve(t, h))
			_, err := call(context.Background(), client, newRequest(t, tc.cmd, mesosStdin))
			if err == nil {
				t.Fatalf("%s succeeded; want an error", tc.cmd)
			}
			var te *types.Error
			if !errors.As(err, &te) || te.Code != tc.wantCode || !strings.Contains(te.Msg, tc.wantMsg) {
				t.Errorf("error = %#v; want code %d with %q", err, tc.wantCode, tc.wantMsg)
			}
			// The server survives and answers the next request.
			h.add, h.other = nil, nil
			h.result = &types100.Result{IPs: []*types100.IPConfig{{Address: net.IPNet{IP: net.IPv4(10, 0, 0, 1).To4(), Mask: net.CIDRMask(32, 32)}}}}
			if _, err := call(context.Background(), client, newRequest(t, cni.CmdAdd, mesosStdin)); err != nil {
				t.Errorf("ADD after the failure: %v", err)
			}
		})
	}
}

// TestServerFillsIn posts raw requests: the server parses the config and
// computes the identity when the client left them out, and rejects bad
// requests with CNI codes.
func TestServerFillsIn(t *testing.T) {
	h := &hookHandler{}
	srv := cni.NewHTTPHandler(h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		status   int
		wantCode uint
	}{
		{name: "minimal DEL", method: "POST", path: "/v1/cni/del", status: 200,
			body: `{"containerID":"c1","ifname":"eth0","config":` + mesosStdin + `}`},
		{name: "GC with attachments from config", method: "POST", path: "/v1/cni/gc", status: 200,
			body: `{"config":{"name":"n","type":"tabby","cni.dev/valid-attachments":[]}}`},
		{name: "GC without attachments", method: "POST", path: "/v1/cni/gc", status: 400, wantCode: types.ErrInvalidNetworkConfig,
			body: `{"config":{"name":"n","type":"tabby"}}`},
		{name: "not JSON", method: "POST", path: "/v1/cni/add", status: 400, wantCode: types.ErrDecodingFailure, body: `{`},
		{name: "bad config", method: "POST", path: "/v1/cni/add", status: 400, wantCode: types.ErrInvalidNetworkConfig,
			body: `{"containerID":"c1","ifname":"eth0","config":{"name":"n","type":"tabby","mtu":1}}`},
		{name: "command mismatch", method: "POST", path: "/v1/cni/add", status: 400, wantCode: types.ErrInvalidEnvironmentVariables,
			body: `{"command":"DEL","containerID":"c1","ifname":"eth0","config":{"name":"n","type":"tabby"}}`},
		{name: "no container", method: "POST", path: "/v1/cni/check", status: 400, wantCode: types.ErrInvalidEnvironmentVariables,
			body: `{"ifname":"eth0","config":{"name":"n","type":"tabby"}}`},
		{name: "bad mode", method: "POST", path: "/v1/cni/del", status: 400, wantCode: types.ErrInvalidNetworkConfig,
			body: `{"mode":"bridge","containerID":"c1","ifname":"eth0","config":{"name":"n","type":"tabby"}}`},
		{name: "GET", method: "GET", path: "/v1/cni/add", status: 405},
		{name: "unknown path", method: "POST", path: "/v1/cni/frobnicate", status: 404, body: `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{header: http.Header{}}
			r, err := http.NewRequest(tc.method, "http://x"+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			srv.ServeHTTP(rec, r)
			if rec.status != tc.status {
				t.Fatalf("status = %d (%s); want %d", rec.status, rec.body.String(), tc.status)
			}
			if tc.status == 405 || tc.status == 404 {
				return
			}
			var resp cni.Response
			if err := json.Unmarshal(rec.body.Bytes(), &resp); err != nil {
				t.Fatalf("response %q: %v", rec.body.String(), err)
			}
			if tc.wantCode != 0 {
				if resp.Error == nil || resp.Error.Code != tc.wantCode {
					t.Fatalf("response = %s; want error code %d", rec.body.String(), tc.wantCode)
				}
				return
			}
			if resp.Error != nil {
				t.Fatalf("response error = %v; want none", resp.Error)
			}
			got := h.last()
			if got.NetConf == nil {
				t.Fatalf("handler got no NetConf")
			}
			if got.Command == cni.CmdDel && (got.Identity == nil || got.Identity.Orchestrator != "mesos" || got.Identity.IPAMHandle != "dcos.c1.eth0") {
				t.Errorf("identity = %+v; want a mesos identity with handle dcos.c1.eth0", got.Identity)
			}
			if got.Command == cni.CmdGC && (got.ValidAttachments == nil || len(got.ValidAttachments) != 0) {
				t.Errorf("ValidAttachments = %#v; want an empty, non-nil list", got.ValidAttachments)
			}
		})
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(s int)           { r.status = s }

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tby")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func TestClientAgentDown(t *testing.T) {
	dir := shortDir(t)
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	tests := []struct {
		name, socket, cmd string
		code              uint
		want              string
	}{
		{name: "no socket", socket: missing, cmd: cni.CmdAdd, code: types.ErrTryAgainLater,
			want: `tabby agent is not reachable at ` + missing + `: connect: no such file or directory; start it with "tabby agent --node NAME --datastore URLS"`},
		{name: "refused", socket: stale, cmd: cni.CmdDel, code: types.ErrTryAgainLater,
			want: `tabby agent is not reachable at ` + stale + `: connect: connection refused; start it with "tabby agent --node NAME --datastore URLS"`},
		{name: "status", socket: missing, cmd: cni.CmdStatus, code: types.ErrPluginNotAvailable,
			want: `tabby agent is not reachable at ` + missing + `: connect: no such file or directory; start it with`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(context.Background(), cni.NewClient(tc.socket), newRequest(t, tc.cmd, mesosStdin))
			if cni.CodeOf(err, 0) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v (code %d); want code %d with %q", err, cni.CodeOf(err, 0), tc.code, tc.want)
			}
			if !errors.Is(err, fs.ErrNotExist) && tc.socket == missing {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = false; want the dial error wrapped")
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	h := &hookHandler{other: func(ctx context.Context, _ *cni.Request) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	client := cni.NewClient(cnitest.Serve(t, h))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := client.Del(ctx, newRequest(t, cni.CmdDel, mesosStdin))
	if cni.CodeOf(err, 0) != types.ErrTryAgainLater || !strings.Contains(err.Error(), "did not answer DEL in time") {
		t.Errorf("error = %v; want code 11 saying the agent did not answer in time", err)
	}
}

func TestClientBadAnswers(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{name: "not a response", body: "hello", status: 200, want: "not a CNI response"},
		{name: "http error without body", body: "{}", status: 502, want: "502"},
		{name: "bad result", body: `{"result":{"cniVersion":"1.1.0","ips":"x"}}`, status: 200, want: "bad result"},
		{name: "no result", body: `{}`, status: 200, want: "without a result"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(shortDir(t), "a.sock")
			l, err := cni.Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close() })
			_, err = cni.NewClient(path).Add(context.Background(), newRequest(t, cni.CmdAdd, mesosStdin))
			if cni.CodeOf(err, 0) != types.ErrInternal || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v; want code 999 with %q", err, tc.want)
			}
		})
	}
}

func TestListen(t *testing.T) {
	dir := shortDir(t)
	t.Run("creates 0600 and removes on close", func(t *testing.T) {
		path := filepath.Join(dir, "sub", "a.sock")
		l, err := cni.Listen(path)
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != fs.ModeSocket {
			t.Errorf("mode = %v; want a socket with 0600", fi.Mode())
		}
		l.Close()
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after Close, Stat = %v; want not exist", err)
		}
	})
	t.Run("replaces a stale socket", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		old, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		old.(*net.UnixListener).SetUnlinkOnClose(false)
		old.Close()
		l, err := cni.Listen(path)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		l.Close()
	})
	t.Run("refuses a live socket", func(t *testing.T) {
		path := filepath.Join(dir, "live.sock")
		live, err := cni.Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		if l, err := cni.Listen(path); err == nil || !strings.Contains(err.Error(), "another process") {
			if l != nil {
				l.Close()
			}
			t.Errorf("Listen over a live socket: error %v; want one saying another process serves it", err)
		}
	})
	t.Run("refuses a regular file", func(t *testing.T) {
		path := filepath.Join(dir, "file")
		if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := cni.Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over a file: error %v; want one saying it is not a socket", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "keep me" {
			t.Errorf("the file was changed to %q", b)
		}
	})
}

func TestErrorHelpers(t *testing.T) {
	base := io.ErrUnexpectedEOF
	err := cni.Errorf(types.ErrIOFailure, "read config: %w", base)
	if !errors.Is(err, base) || err.Error() != "read config: unexpected EOF" {
		t.Errorf("Errorf = %q; want it to wrap %v", err, base)
	}
	wrapped := errors.Join(errors.New("outer"), err)
	if got := cni.CodeOf(wrapped, 0); got != types.ErrIOFailure {
		t.Errorf("CodeOf(wrapped) = %d; want %d", got, types.ErrIOFailure)
	}
	if got := cni.CodeOf(errors.New("x"), 42); got != 42 {
		t.Errorf("CodeOf(uncoded, 42) = %d; want 42", got)
	}
	te := cni.AsTypesError(wrapped, 0)
	if te.Code != types.ErrIOFailure || te.Msg != "outer\nread config: unexpected EOF" {
		t.Errorf("AsTypesError = %+v; want code 5 with the whole message", te)
	}
	if cni.AsTypesError(nil, 0) != nil {
		t.Error("AsTypesError(nil) != nil")
	}
}
