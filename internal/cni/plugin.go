package cni

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// undoTimeout bounds the DEL sent after an ADD whose result cannot be
// printed.
const undoTimeout = 30 * time.Second

// PluginOptions configure a Plugin.
type PluginOptions struct {
	// Argv0 is the name the runtime executed the plugin as: "tabby-ipam"
	// selects ModeIPAM (see ModeFor).
	Argv0 string
	// Stdout receives results; Stderr receives debug logs (log_level).
	Stdout io.Writer
	Stderr io.Writer
	// Version is tabby-cni's own version, for About.
	Version string
	// NewClient returns the agent for a socket path; nil means NewClient.
	NewClient func(socket string) Handler
}

// Plugin runs CNI commands: it parses and validates the request, forwards
// it to the agent and prints the result in the caller's version. One
// Plugin serves one process (one command).
type Plugin struct {
	opts PluginOptions
	// confVersion is the cniVersion of the request, once its config was
	// decoded; errors are printed in it.
	confVersion string
	confSeen    bool
}

// NewPlugin returns a plugin; it starts nothing.
func NewPlugin(o PluginOptions) *Plugin {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.NewClient == nil {
		o.NewClient = func(socket string) Handler { return NewClient(socket) }
	}
	return &Plugin{opts: o}
}

// Funcs returns the command functions for skel. They return
// *types.Error, which skel prints with its code (any other error would
// become code 999).
func (p *Plugin) Funcs() skel.CNIFuncs {
	run := func(cmd string) func(*skel.CmdArgs) error {
		return func(a *skel.CmdArgs) error {
			if err := p.RunCommand(cmd, a); err != nil {
				return AsTypesError(err, types.ErrInternal)
			}
			return nil
		}
	}
	return skel.CNIFuncs{Add: run(CmdAdd), Del: run(CmdDel), Check: run(CmdCheck), GC: run(CmdGC), Status: run(CmdStatus)}
}

// About is printed by skel when CNI_COMMAND is unset.
func (p *Plugin) About() string {
	v := p.opts.Version
	if v == "" {
		v = "dev"
	}
	return fmt.Sprintf("tabby-cni %s: the Tabby CNI plugin (types %q and %q); it forwards requests to the tabby agent at %s",
		v, TypeAttach, TypeIPAM, DefaultAgentSocket)
}

// WriteError prints e as a CNI error result in the request's version (the
// highest supported version when the config was never decoded, e.g. for
// a missing environment variable).
func (p *Plugin) WriteError(w io.Writer, e *types.Error) error {
	v := WireVersion
	if p.confSeen {
		v = p.confVersion
	}
	return WriteError(w, v, e)
}

// ModeFor decides what the plugin does. The name it was executed as wins
// ("tabby-ipam" or "tabby"); under another name (say "tabby-cni") the
// config decides: type "tabby-ipam", or ipam.type "tabby-ipam" under
// another plugin's type, is ModeIPAM. Type "tabby" allocates through the
// agent itself, so its ipam.type may only be empty or "tabby-ipam".
func ModeFor(argv0 string, conf *NetConf) (Mode, error) {
	mode := ModeAttach
	switch filepath.Base(argv0) {
	case TypeIPAM:
		return ModeIPAM, nil
	case TypeAttach:
	default:
		switch {
		case conf.Type == TypeIPAM:
			return ModeIPAM, nil
		case conf.Type != TypeAttach && conf.IPAM.Type == TypeIPAM:
			return ModeIPAM, nil
		}
	}
	if conf.IPAM.Type != "" && conf.IPAM.Type != TypeIPAM {
		return mode, fieldErr("ipam.type", conf.IPAM.Type,
			"is not supported with type %q: the tabby agent assigns the addresses (leave ipam.type out or use %q)", TypeAttach, TypeIPAM)
	}
	return mode, nil
}

// RunCommand executes one CNI command (skel calls it through Funcs).
func (p *Plugin) RunCommand(cmd string, args *skel.CmdArgs) error {
	conf, err := ParseConfig(args.StdinData)
	if conf != nil {
		p.confSeen = true
		p.confVersion = conf.CNIVersion
		if !validVersion(conf.CNIVersion) {
			p.confVersion = WireVersion
		}
	}
	log := p.logger(conf)
	if err != nil {
		// DEL is best effort: an attachment made under a config that no
		// longer validates (a laxer plugin, an edited file) must still be
		// released, and Mesos replays the ADD-time stdin.
		if cmd != CmdDel || conf == nil || !validName(conf.Name) || CodeOf(err, 0) != types.ErrInvalidNetworkConfig {
			return err
		}
		log.Warn("network config does not validate; releasing the attachment anyway", "error", err)
		conf = lenient(conf)
	}
	mode, err := ModeFor(p.opts.Argv0, conf)
	if err != nil && cmd != CmdDel {
		return err
	}
	req := &Request{
		Command:     cmd,
		ContainerID: args.ContainerID,
		NetNS:       args.Netns,
		IfName:      args.IfName,
		Args:        args.Args,
		Path:        args.Path,
		Mode:        mode,
		Config:      args.StdinData,
		NetConf:     conf,
	}
	switch cmd {
	case CmdAdd, CmdDel, CmdCheck:
		id, err := IdentityFor(req)
		if err != nil {
			if cmd != CmdDel {
				return err
			}
			log.Warn("cannot compute the full endpoint identity; releasing by handle", "error", err)
			id = &Identity{
				Orchestrator: OrchestratorCNI, Namespace: DefaultNamespace, Workload: req.ContainerID,
				ContainerID: req.ContainerID, InterfaceName: req.IfName, Network: conf.Name,
				IPAMHandle: HandleID(conf.Name, req.ContainerID, req.IfName),
			}
		}
		req.Identity = id
	case CmdGC:
		req.ValidAttachments = conf.Attachments()
		if req.ValidAttachments == nil {
			return missing("cni.dev/valid-attachments")
		}
	}

	agent := p.opts.NewClient(conf.Socket())
	ctx, cancel := context.WithTimeout(context.Background(), conf.Timeout(cmd))
	defer cancel()
	start := time.Now()
	log.Debug("forwarding to the tabby agent", "command", cmd, "containerID", req.ContainerID, "ifname", req.IfName,
		"mode", mode, "socket", conf.Socket())
	defer func() { log.Debug("tabby agent answered", "command", cmd, "duration", time.Since(start)) }()

	switch cmd {
	case CmdAdd:
		return p.add(ctx, agent, req)
	case CmdDel:
		return agent.Del(ctx, req)
	case CmdCheck:
		return agent.Check(ctx, req)
	case CmdGC:
		return agent.GC(ctx, req)
	case CmdStatus:
		return agent.Status(ctx, req)
	}
	return Errorf(types.ErrInvalidEnvironmentVariables, "unknown CNI_COMMAND %q", cmd)
}

func (p *Plugin) add(ctx context.Context, agent Handler, req *Request) error {
	// A chained ADD keeps what the earlier plugins reported; a prevResult
	// that does not decode is refused before anything is allocated.
	var prev *types100.Result
	if req.Mode == ModeAttach {
		var err error
		if prev, err = req.NetConf.ParsePrevResult(); err != nil {
			return err
		}
	}
	res, err := agent.Add(ctx, req)
	if err != nil {
		return err
	}
	var out []byte
	if res == nil || len(res.IPs) == 0 {
		err = Errorf(types.ErrInternal, "tabby agent returned no IP address for %s", req.Identity.IPAMHandle)
	} else {
		out, err = FormatResult(MergePrevResult(prev, res), req.NetConf.CNIVersion)
		if err != nil {
			err = Errorf(types.ErrInternal, "%w", err)
		}
	}
	if err != nil {
		// Nothing reaches the runtime, so nothing may stay allocated.
		return p.undo(agent, req, err)
	}
	if _, err := p.opts.Stdout.Write(out); err != nil {
		return p.undo(agent, req, Errorf(types.ErrIOFailure, "write result: %w", err))
	}
	return nil
}

// undo sends DEL for an ADD that failed after the agent succeeded.
func (p *Plugin) undo(agent Handler, req *Request, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
	defer cancel()
	del := *req
	del.Command = CmdDel
	if err := agent.Del(ctx, &del); err != nil {
		return withCause(CodeOf(cause, types.ErrInternal), cause, "%v (and releasing what the agent set up failed too: %v)", cause, err)
	}
	return cause
}

// lenient keeps what a DEL needs from a config that does not validate,
// dropping values that would send it to the wrong place.
func lenient(c *NetConf) *NetConf {
	out := *c
	if !validVersion(out.CNIVersion) {
		out.CNIVersion = ""
	}
	if validateSocket("agent_socket", out.AgentSocket) != nil {
		out.AgentSocket = ""
	}
	if validateSocket("ipam.agent_socket", out.IPAM.AgentSocket) != nil {
		out.IPAM.AgentSocket = ""
	}
	if out.TimeoutSeconds < 0 || out.TimeoutSeconds > maxTimeoutSeconds {
		out.TimeoutSeconds = 0
	}
	return &out
}

func validVersion(v string) bool {
	if v == "" {
		return true
	}
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// logger writes to Stderr at the config's log_level (warning by default).
func (p *Plugin) logger(conf *NetConf) *slog.Logger {
	level := slog.LevelWarn
	if conf != nil {
		switch strings.ToLower(conf.LogLevel) {
		case "trace", "debug":
			level = slog.LevelDebug
		case "info":
			level = slog.LevelInfo
		case "error", "fatal", "panic":
			level = slog.LevelError
		case "none", "off":
			level = slog.LevelError + 100
		}
	}
	return slog.New(slog.NewTextHandler(p.opts.Stderr, &slog.HandlerOptions{Level: level})).With("component", "tabby-cni")
}
