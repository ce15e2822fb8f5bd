package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// AgentStartHint tells the operator how to start the agent.
const AgentStartHint = `start it with "tabby agent --node NAME --datastore URLS"`

// Client sends CNI requests to the agent's unix socket. It implements
// Handler, so the plugin talks to a Client exactly as the agent's server
// talks to the agent. Timeouts come from the caller's context.
type Client struct {
	socket string
	hc     *http.Client
}

var _ Handler = (*Client)(nil)

// NewClient returns a client for the agent socket at path. It connects
// only when a request is sent.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
		// A plugin process sends one request; keeping the connection
		// would only leave a goroutine behind in longer-lived users.
		DisableKeepAlives: true,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Add sends ADD and returns the agent's result.
func (c *Client) Add(ctx context.Context, req *Request) (*types100.Result, error) {
	raw, err := c.do(ctx, CmdAdd, req)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, Errorf(types.ErrInternal, "tabby agent at %s answered ADD without a result", c.socket)
	}
	r, err := ParseResult(raw, WireVersion)
	if err != nil {
		return nil, Errorf(types.ErrInternal, "tabby agent at %s answered ADD with a bad result: %w", c.socket, err)
	}
	return r, nil
}

// Del sends DEL.
func (c *Client) Del(ctx context.Context, req *Request) error {
	_, err := c.do(ctx, CmdDel, req)
	return err
}

// Check sends CHECK.
func (c *Client) Check(ctx context.Context, req *Request) error {
	_, err := c.do(ctx, CmdCheck, req)
	return err
}

// GC sends GC.
func (c *Client) GC(ctx context.Context, req *Request) error {
	_, err := c.do(ctx, CmdGC, req)
	return err
}

// Status sends STATUS; an unreachable agent is code 50 (not available).
func (c *Client) Status(ctx context.Context, req *Request) error {
	_, err := c.do(ctx, CmdStatus, req)
	return err
}

func (c *Client) do(ctx context.Context, cmd string, req *Request) (json.RawMessage, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, Errorf(types.ErrInternal, "encode %s request: %w", cmd, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://tabby-agent"+commandPath(cmd), bytes.NewReader(body))
	if err != nil {
		return nil, Errorf(types.ErrInternal, "build %s request: %w", cmd, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, c.transportError(ctx, cmd, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, c.transportError(ctx, cmd, err)
	}
	if len(data) > maxBodyBytes {
		return nil, Errorf(types.ErrInternal, "tabby agent at %s answered %s with more than %d bytes", c.socket, cmd, maxBodyBytes)
	}
	var r Response
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, Errorf(types.ErrInternal, "tabby agent at %s answered %s with %s and a body that is not a CNI response: %s",
			c.socket, cmd, resp.Status, showValue(string(data)))
	}
	if r.Error != nil {
		return nil, r.Error
	}
	if resp.StatusCode != http.StatusOK {
		return nil, Errorf(types.ErrInternal, "tabby agent at %s answered %s with %s", c.socket, cmd, resp.Status)
	}
	return r.Result, nil
}

// transportError explains a failure to talk to the agent. Every such
// failure is transient from the runtime's view: code 11 (try again later),
// or 50 (plugin not available) for STATUS.
func (c *Client) transportError(ctx context.Context, cmd string, err error) error {
	code := uint(types.ErrTryAgainLater)
	if cmd == CmdStatus {
		code = types.ErrPluginNotAvailable
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) || errors.Is(err, context.DeadlineExceeded) {
		return Errorf(code, "tabby agent at %s did not answer %s in time: %w", c.socket, cmd, err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		reason := err
		var se *os.SyscallError
		if errors.As(err, &se) {
			reason = se
		}
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return withCause(code, err, "tabby agent is not reachable at %s: %v; %s", c.socket, reason, AgentStartHint)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return withCause(code, err, "tabby agent is not reachable at %s: %v; the socket is for root only, run the plugin as root", c.socket, reason)
		}
		return withCause(code, err, "tabby agent is not reachable at %s: %v", c.socket, reason)
	}
	return Errorf(code, "talk to tabby agent at %s (%s): %w", c.socket, cmd, err)
}
