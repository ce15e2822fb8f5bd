package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// The wire protocol between tabby-cni and the agent: HTTP/1.1 over the
// agent's unix socket, POST /v1/cni/{add,del,check,gc,status} with a JSON
// Request, answered by a JSON Response.

// CNI commands, as in CNI_COMMAND.
const (
	CmdAdd    = "ADD"
	CmdDel    = "DEL"
	CmdCheck  = "CHECK"
	CmdGC     = "GC"
	CmdStatus = "STATUS"
)

// PathPrefix is the URL path of the commands: PathPrefix + "add", ….
const PathPrefix = "/v1/cni/"

// maxBodyBytes bounds requests and responses on the socket.
const maxBodyBytes = 8 << 20

// Mode says what the plugin was asked to do.
type Mode string

const (
	// ModeAttach is the full attach of type "tabby".
	ModeAttach Mode = "attach"
	// ModeIPAM is type "tabby-ipam": addresses only, for another plugin.
	ModeIPAM Mode = "ipam"
)

// Request is one CNI command forwarded to the agent.
type Request struct {
	Command     string `json:"command"`
	ContainerID string `json:"containerID,omitempty"`
	NetNS       string `json:"netns,omitempty"` // may be empty on DEL
	IfName      string `json:"ifname,omitempty"`
	Args        string `json:"args,omitempty"` // CNI_ARGS as given
	Path        string `json:"path,omitempty"` // CNI_PATH
	Mode        Mode   `json:"mode"`
	// Config is the plugin's stdin (compacted in transit).
	Config  json.RawMessage `json:"config"`
	NetConf *NetConf        `json:"netconf,omitempty"`
	// Identity is set for ADD, DEL and CHECK.
	Identity *Identity `json:"identity,omitempty"`
	// ValidAttachments is GC's list of attachments to keep; it is never
	// nil on GC (an empty list means none is valid).
	ValidAttachments []Attachment `json:"validAttachments"`
}

// Response is the agent's answer. Result is set for a successful ADD, as a
// CNI 1.1.0 result; Error is set on failure.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *types.Error    `json:"error,omitempty"`
}

// Handler is what the agent implements to serve CNI commands. Errors
// should carry a CNI code (Errorf); uncoded errors become code 999
// (internal), or 50 (plugin not available) for Status.
//
// Add must be idempotent for a repeated (container ID, ifname); Del must
// succeed when there is nothing left to delete and when NetNS is empty;
// GC releases everything of req.NetConf.Name not in req.ValidAttachments;
// Status returns nil when the agent can serve ADD.
type Handler interface {
	Add(ctx context.Context, req *Request) (*types100.Result, error)
	Del(ctx context.Context, req *Request) error
	Check(ctx context.Context, req *Request) error
	GC(ctx context.Context, req *Request) error
	Status(ctx context.Context, req *Request) error
}

// NewHTTPHandler serves the wire protocol with h. It decodes and checks
// each request (re-parsing the config and computing the identity when the
// client left them out), calls h, and maps errors to CNI codes. A panic in
// h becomes a code-999 error, logged with its stack.
func NewHTTPHandler(h Handler, log *slog.Logger) http.Handler {
	s := &server{h: h, log: log.With("component", "cni-server")}
	mux := http.NewServeMux()
	for _, cmd := range []string{CmdAdd, CmdDel, CmdCheck, CmdGC, CmdStatus} {
		mux.HandleFunc("POST "+commandPath(cmd), func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, cmd) })
	}
	return mux
}

func commandPath(cmd string) string {
	switch cmd {
	case CmdAdd:
		return PathPrefix + "add"
	case CmdDel:
		return PathPrefix + "del"
	case CmdCheck:
		return PathPrefix + "check"
	case CmdGC:
		return PathPrefix + "gc"
	case CmdStatus:
		return PathPrefix + "status"
	}
	return PathPrefix + "unknown"
}

type server struct {
	h   Handler
	log *slog.Logger
}

func (s *server) serve(w http.ResponseWriter, r *http.Request, cmd string) {
	start := time.Now()
	req, err := decodeRequest(io.LimitReader(r.Body, maxBodyBytes+1), cmd)
	var result *types100.Result
	if err == nil {
		result, err = s.call(r.Context(), cmd, req)
	}
	resp := Response{}
	status := http.StatusOK
	if err == nil && result != nil {
		c := *result
		c.CNIVersion = WireVersion
		resp.Result, err = json.Marshal(&c)
		if err != nil {
			err = Errorf(types.ErrInternal, "encode ADD result: %w", err)
		}
	}
	if err != nil {
		def := uint(types.ErrInternal)
		if cmd == CmdStatus {
			def = types.ErrPluginNotAvailable
		}
		resp = Response{Error: AsTypesError(err, def)}
		status = httpStatus(resp.Error.Code)
		attrs := []any{"command", cmd, "code", resp.Error.Code, "error", resp.Error.Error(), "duration", time.Since(start)}
		if req != nil {
			attrs = append(attrs, "containerID", req.ContainerID, "ifname", req.IfName)
		}
		s.log.Warn("CNI request failed", attrs...)
	} else if req != nil {
		s.log.Debug("CNI request done", "command", cmd, "containerID", req.ContainerID, "ifname", req.IfName, "duration", time.Since(start))
	}
	body, merr := json.Marshal(resp)
	if merr != nil {
		body = []byte(`{"error":{"code":999,"msg":"encode response failed"}}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// call runs the handler, turning a panic into an error.
func (s *server) call(ctx context.Context, cmd string, req *Request) (result *types100.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("CNI handler panicked", "command", cmd, "containerID", req.ContainerID, "panic", p, "stack", string(debug.Stack()))
			result, err = nil, Errorf(types.ErrInternal, "tabby agent failed on %s: internal error (panic: %v)", cmd, p)
		}
	}()
	switch cmd {
	case CmdAdd:
		result, err = s.h.Add(ctx, req)
		if err == nil && result == nil {
			err = Errorf(types.ErrInternal, "tabby agent returned no result for ADD")
		}
	case CmdDel:
		err = s.h.Del(ctx, req)
	case CmdCheck:
		err = s.h.Check(ctx, req)
	case CmdGC:
		err = s.h.GC(ctx, req)
	case CmdStatus:
		err = s.h.Status(ctx, req)
	}
	return result, err
}

// decodeRequest reads a Request and fills in what the client may leave
// out: the parsed config and the identity.
func decodeRequest(body io.Reader, cmd string) (*Request, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, Errorf(types.ErrIOFailure, "read request: %w", err)
	}
	if len(data) > maxBodyBytes {
		return nil, Errorf(types.ErrDecodingFailure, "request is larger than %d bytes", maxBodyBytes)
	}
	req := &Request{}
	if err := json.Unmarshal(data, req); err != nil {
		return nil, Errorf(types.ErrDecodingFailure, "decode %s request: %w", cmd, err)
	}
	if req.Command == "" {
		req.Command = cmd
	}
	if req.Command != cmd {
		return nil, Errorf(types.ErrInvalidEnvironmentVariables, "request command %q sent to the %s endpoint", req.Command, cmd)
	}
	if req.Mode == "" {
		req.Mode = ModeAttach
	}
	if req.Mode != ModeAttach && req.Mode != ModeIPAM {
		return nil, Errorf(types.ErrInvalidNetworkConfig, "request mode %q is not %q or %q", req.Mode, ModeAttach, ModeIPAM)
	}
	if req.NetConf == nil {
		conf, err := ParseConfig(req.Config)
		if err != nil {
			return nil, err
		}
		req.NetConf = conf
	}
	switch cmd {
	case CmdAdd, CmdDel, CmdCheck:
		if req.ContainerID == "" {
			return nil, Errorf(types.ErrInvalidEnvironmentVariables, "%s request has no container ID (CNI_CONTAINERID)", cmd)
		}
		if req.IfName == "" {
			return nil, Errorf(types.ErrInvalidEnvironmentVariables, "%s request has no interface name (CNI_IFNAME)", cmd)
		}
		if req.Identity == nil {
			id, err := IdentityFor(req)
			if err != nil {
				return nil, err
			}
			req.Identity = id
		}
	case CmdGC:
		if req.ValidAttachments == nil {
			req.ValidAttachments = req.NetConf.Attachments()
		}
		if req.ValidAttachments == nil {
			return nil, Errorf(types.ErrInvalidNetworkConfig, "invalid network config: field \"cni.dev/valid-attachments\" is missing from the GC request")
		}
	}
	return req, nil
}

// httpStatus is the HTTP status of an answer with CNI error code.
func httpStatus(code uint) int {
	switch code {
	case types.ErrTryAgainLater, types.ErrPluginNotAvailable, types.ErrLimitedConnectivity:
		return http.StatusServiceUnavailable
	case types.ErrInternal, types.ErrUnknown, types.ErrIOFailure:
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// Listen creates the agent's unix socket at path with mode 0600 (making
// its directory, mode 0755, if needed). A stale socket nobody listens on
// is removed first; a live one, or a file that is not a socket, is an
// error. Closing the listener removes the socket.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory for %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen on %s: the path exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("listen on %s: another process is serving that socket (is a tabby agent already running?)", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The umask (022 usually) already kept others from connecting between
	// bind and this chmod: connecting needs write permission.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("set mode 0600 on %s: %w", path, err)
	}
	return l, nil
}
