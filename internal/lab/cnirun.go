package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/tabbynet/tabby/internal/netns"
)

// MesosArgsKey is the args key the Mesos network/cni isolator injects.
const MesosArgsKey = "org.apache.mesos"

// mesosPath is the PATH the lab, as the Mesos agent, gives plugins.
const mesosPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// mesosEnv turns the environment libcni builds (the caller's environment
// plus CNI_*) into the one Mesos gives a plugin: CNI_COMMAND,
// CNI_CONTAINERID, CNI_NETNS (only when there is a namespace), CNI_IFNAME,
// CNI_PATH and PATH; never CNI_ARGS.
func mesosEnv(environ []string) []string {
	keep := map[string]bool{"CNI_COMMAND": true, "CNI_CONTAINERID": true, "CNI_NETNS": true, "CNI_IFNAME": true, "CNI_PATH": true}
	vals := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && keep[k] {
			vals[k] = v // the last value wins, as in libcni
		}
	}
	if vals["CNI_NETNS"] == "" {
		delete(vals, "CNI_NETNS")
	}
	out := make([]string, 0, len(vals)+1)
	for _, k := range []string{"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"} {
		if v, ok := vals[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return append(out, "PATH="+mesosPath)
}

// mesosExec runs plugins with the Mesos agent's environment and keeps the
// exact stdin and stdout of the last call (Mesos checkpoints both).
type mesosExec struct {
	raw invoke.Exec

	mu     sync.Mutex
	stdin  []byte
	stdout []byte
}

func (e *mesosExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	out, err := e.raw.ExecPlugin(ctx, pluginPath, stdin, mesosEnv(environ))
	e.mu.Lock()
	e.stdin, e.stdout = append([]byte(nil), stdin...), append([]byte(nil), out...)
	e.mu.Unlock()
	return out, err
}

func (e *mesosExec) FindInPath(plugin string, paths []string) (string, error) {
	return e.raw.FindInPath(plugin, paths)
}

func (e *mesosExec) Decode(data []byte) (version.PluginInfo, error) { return e.raw.Decode(data) }

// stderrBuf collects plugin stderr for error messages.
type stderrBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *stderrBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *stderrBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(s.b.String())
}

// mesosNetworkInfo is the NetworkInfo Mesos puts in args: what Marathon
// sends for a container on a named network (labels from networks[].labels,
// one empty ip_addresses entry).
func mesosNetworkInfo(network string, labels []KeyValue) map[string]any {
	ls := make([]map[string]string, 0, len(labels))
	for _, l := range labels {
		ls = append(ls, map[string]string{"key": l.Key, "value": l.Value})
	}
	return map[string]any{
		"name":         network,
		"labels":       map[string]any{"labels": ls},
		"ip_addresses": []any{map[string]any{}},
	}
}

// injectMesosArgs adds args["org.apache.mesos"]["network_info"] to a
// network config file's JSON, keeping its other args, and refuses a file
// that already holds the key (as the Mesos isolator does).
func injectMesosArgs(conf []byte, networkInfo map[string]any) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		return nil, fmt.Errorf("network config: %w", err)
	}
	if m == nil {
		return nil, errors.New("network config: not a JSON object")
	}
	args, _ := m["args"].(map[string]any)
	if m["args"] != nil && args == nil {
		return nil, errors.New(`network config: "args" is not an object`)
	}
	if args == nil {
		args = map[string]any{}
	}
	if _, ok := args[MesosArgsKey]; ok {
		return nil, fmt.Errorf("network config: args[%q] is set in the file; Mesos refuses such a config", MesosArgsKey)
	}
	args[MesosArgsKey] = map[string]any{"network_info": networkInfo}
	m["args"] = args
	return json.Marshal(m)
}

// injectCNIArgs sets args.cni.labels (CNI conventions) and args.cni.ports
// (named ports, a Tabby extension) in every plugin of a conflist.
func injectCNIArgs(list []byte, labels []KeyValue, ports []NamedPort) ([]byte, error) {
	if len(labels) == 0 && len(ports) == 0 {
		return list, nil
	}
	var m map[string]any
	if err := json.Unmarshal(list, &m); err != nil {
		return nil, fmt.Errorf("network config list: %w", err)
	}
	if m == nil {
		return nil, errors.New("network config list: not a JSON object")
	}
	plugins, _ := m["plugins"].([]any)
	ls := make([]map[string]string, 0, len(labels))
	for _, l := range labels {
		ls = append(ls, map[string]string{"key": l.Key, "value": l.Value})
	}
	for _, p := range plugins {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		args, _ := pm["args"].(map[string]any)
		if args == nil {
			args = map[string]any{}
		}
		cni, _ := args["cni"].(map[string]any)
		if cni == nil {
			cni = map[string]any{}
		}
		if len(ls) > 0 {
			cni["labels"] = ls
		}
		if len(ports) > 0 {
			cni["ports"] = ports
		}
		args["cni"] = cni
		pm["args"] = args
	}
	return json.Marshal(m)
}

// findMesosConf loads the network named name from a Mesos CNI config
// directory the way the isolator does: every regular file, whatever its
// extension, keyed by its "name"; files without a string name or type,
// and later duplicates, are skipped.
func findMesosConf(dir, name string) ([]byte, string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", fmt.Errorf("read CNI config dir: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var head struct {
			Name any `json:"name"`
			Type any `json:"type"`
		}
		if json.Unmarshal(data, &head) != nil {
			continue
		}
		n, ok1 := head.Name.(string)
		_, ok2 := head.Type.(string)
		if ok1 && ok2 && n == name {
			return data, p, nil
		}
	}
	return nil, "", fmt.Errorf("no CNI network %q in %s", name, dir)
}

func newContainerID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cniResult is what the lab keeps of an ADD result.
type cniResult struct {
	IPs []netip.Prefix
	DNS *DNS
}

func resultOf(r types.Result) (cniResult, error) {
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return cniResult{}, fmt.Errorf("convert the CNI result: %w", err)
	}
	var out cniResult
	for _, ip := range res.IPs {
		if p, ok := netip.AddrFromSlice(ip.Address.IP); ok {
			ones, _ := ip.Address.Mask.Size()
			out.IPs = append(out.IPs, netip.PrefixFrom(p.Unmap(), ones))
		}
	}
	d := res.DNS
	if len(d.Nameservers) > 0 || d.Domain != "" || len(d.Search) > 0 || len(d.Options) > 0 {
		out.DNS = &DNS{Nameservers: d.Nameservers, Domain: d.Domain, Search: d.Search, Options: d.Options}
	}
	return out, nil
}

func (l *Lab) cniConfig(ex invoke.Exec) *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{l.l.pluginDir()}, l.l.cniCache(), ex)
}

func (l *Lab) netconfFile(c *Container) string {
	return filepath.Join(l.l.container(c.Name), "netconf.json")
}

// mesosHandle is the container's netns handle under the host's Mesos CNI
// root: <root>/<containerID>/ns.
func (l *Lab) mesosHandle(c *Container) string {
	return filepath.Join(l.l.mesosRoot(c.Node), c.ContainerID, "ns")
}

func (l *Lab) mesosCheckpoint(c *Container) string {
	return filepath.Join(l.l.mesosRoot(c.Node), c.ContainerID, c.Network, "network.conf")
}

// cniAdd attaches container c on host h as a runtime does: Mesos (0.1.0
// config with the Mesos args, a bind-mounted netns handle, no CNI_ARGS)
// when it runs a Mesos app, containerd otherwise (the 1.1.0 conflist,
// args.cni.labels, and the Kubernetes CNI_ARGS when it has a namespace).
func (l *Lab) cniAdd(ctx context.Context, h Node, c *Container) (cniResult, error) {
	var errOut stderrBuf
	raw := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: &errOut}}
	wrap := func(err error) error {
		if s := errOut.String(); s != "" {
			return fmt.Errorf("%w (plugin stderr: %s)", err, s)
		}
		return err
	}
	if c.Mesos != nil {
		file, _, err := findMesosConf(l.l.mesosConfDir(h.Name), c.Network)
		if err != nil {
			return cniResult{}, err
		}
		ni := mesosNetworkInfo(c.Network, c.Mesos.NetworkLabels)
		if len(c.Ports) > 0 {
			ni["port_mappings"] = mesosPortMappings(c.Ports)
		}
		stdin, err := injectMesosArgs(file, ni)
		if err != nil {
			return cniResult{}, err
		}
		conf, err := libcni.NetworkPluginConfFromBytes(stdin)
		if err != nil {
			return cniResult{}, fmt.Errorf("network config %s: %w", c.Network, err)
		}
		handle := l.mesosHandle(c)
		if err := bindMount(netns.Path(c.NetNS), handle); err != nil {
			return cniResult{}, err
		}
		ex := &mesosExec{raw: raw}
		rt := &libcni.RuntimeConf{ContainerID: c.ContainerID, NetNS: handle, IfName: c.IfName}
		res, addErr := l.cniConfig(ex).AddNetwork(ctx, conf, rt)
		// Checkpoint like Mesos: the exact stdin, and the plugin's stdout.
		ex.mu.Lock()
		sent, got := ex.stdin, ex.stdout
		ex.mu.Unlock()
		if len(sent) == 0 {
			sent = stdin
		}
		cp := l.mesosCheckpoint(c)
		if err := os.MkdirAll(filepath.Join(filepath.Dir(cp), c.IfName), 0o755); err != nil {
			return cniResult{}, err
		}
		if err := os.WriteFile(cp, sent, 0o644); err != nil {
			return cniResult{}, err
		}
		if addErr != nil {
			return cniResult{}, wrap(fmt.Errorf("CNI ADD (Mesos, network %s): %w", c.Network, addErr))
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(cp), c.IfName, "network.info"), got, 0o644); err != nil {
			return cniResult{}, err
		}
		return resultOf(res)
	}
	list, err := libcni.LoadConfList(l.l.netConfDir(h.Name), c.Network)
	if err != nil {
		return cniResult{}, fmt.Errorf("network config %s: %w", c.Network, err)
	}
	data, err := injectCNIArgs(list.Bytes, labelsOf(c.Labels), c.NamedPorts)
	if err != nil {
		return cniResult{}, err
	}
	if list, err = libcni.ConfListFromBytes(data); err != nil {
		return cniResult{}, fmt.Errorf("network config %s: %w", c.Network, err)
	}
	if err := os.WriteFile(l.netconfFile(c), list.Bytes, 0o644); err != nil {
		return cniResult{}, err
	}
	res, err := l.cniConfig(raw).AddNetworkList(ctx, list, l.runtimeConf(c, netns.Path(c.NetNS)))
	if err != nil {
		return cniResult{}, wrap(fmt.Errorf("CNI ADD (network %s): %w", c.Network, err))
	}
	return resultOf(res)
}

func (l *Lab) runtimeConf(c *Container, nsPath string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: c.ContainerID, NetNS: nsPath, IfName: c.IfName}
	if len(c.Ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": cniPortMappings(c.Ports)}
	}
	if c.Namespace != "" && c.Namespace != "default" {
		// What containerd's CRI sends for a pod.
		rt.Args = [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", c.Namespace},
			{"K8S_POD_NAME", c.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", c.ContainerID},
		}
	}
	return rt
}

// cniDel detaches container c with the configuration ADD used. Without
// a live namespace CNI_NETNS is left out (DEL must still release).
func (l *Lab) cniDel(ctx context.Context, c *Container) error {
	var errOut stderrBuf
	raw := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: &errOut}}
	wrap := func(err error) error {
		if s := errOut.String(); s != "" {
			return fmt.Errorf("%w (plugin stderr: %s)", err, s)
		}
		return err
	}
	if c.Mesos != nil {
		stdin, err := os.ReadFile(l.mesosCheckpoint(c))
		if errors.Is(err, os.ErrNotExist) {
			return nil // Mesos skips DEL without a checkpoint
		}
		if err != nil {
			return err
		}
		conf, err := libcni.NetworkPluginConfFromBytes(stdin)
		if err != nil {
			return fmt.Errorf("checkpointed network config: %w", err)
		}
		handle := l.mesosHandle(c)
		if !netns.Exists(handle) {
			handle = ""
		}
		rt := &libcni.RuntimeConf{ContainerID: c.ContainerID, NetNS: handle, IfName: c.IfName}
		if err := l.cniConfig(&mesosExec{raw: raw}).DelNetwork(ctx, conf, rt); err != nil {
			return wrap(fmt.Errorf("CNI DEL (Mesos, network %s): %w", c.Network, err))
		}
		return nil
	}
	data, err := os.ReadFile(l.netconfFile(c))
	if errors.Is(err, os.ErrNotExist) {
		return nil // ADD never ran
	}
	if err != nil {
		return err
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return fmt.Errorf("saved network config: %w", err)
	}
	path := netns.Path(c.NetNS)
	if !netns.Exists(path) {
		path = ""
	}
	if err := l.cniConfig(raw).DelNetworkList(ctx, list, l.runtimeConf(c, path)); err != nil {
		return wrap(fmt.Errorf("CNI DEL (network %s): %w", c.Network, err))
	}
	return nil
}

// mesosPortMappings are NetworkInfo.port_mappings as the Mesos isolator
// passes them.
func mesosPortMappings(ps []PortMapping) []map[string]any {
	out := make([]map[string]any, 0, len(ps))
	for _, p := range ps {
		m := map[string]any{"host_port": p.HostPort, "container_port": p.ContainerPort}
		if p.Protocol != "" {
			m["protocol"] = strings.ToLower(p.Protocol)
		}
		out = append(out, m)
	}
	return out
}

// cniPortMappings are the portMappings capability arguments as a CNI
// runtime (containerd, Podman) passes them.
func cniPortMappings(ps []PortMapping) []map[string]any {
	out := make([]map[string]any, 0, len(ps))
	for _, p := range ps {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		m := map[string]any{"hostPort": p.HostPort, "containerPort": p.ContainerPort, "protocol": proto}
		if p.HostIP != "" {
			m["hostIP"] = p.HostIP
		}
		out = append(out, m)
	}
	return out
}

func labelsOf(m map[string]string) []KeyValue {
	out := make([]KeyValue, 0, len(m))
	for k, v := range m {
		out = append(out, KeyValue{Key: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// resolvConf renders a resolv.conf from a CNI result's dns; entries that
// hold blanks or control characters are dropped.
func resolvConf(d *DNS) string {
	var b strings.Builder
	b.WriteString("# written by tabby lab\n")
	if d == nil {
		b.WriteString("# (the result had no dns section)\n")
		return b.String()
	}
	clean := func(vs []string) []string {
		var out []string
		for _, v := range vs {
			if v != "" && !strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				out = append(out, v)
			}
		}
		return out
	}
	for _, ns := range clean(d.Nameservers) {
		b.WriteString("nameserver " + ns + "\n")
	}
	if dom := clean([]string{d.Domain}); len(dom) == 1 {
		b.WriteString("domain " + dom[0] + "\n")
	}
	if s := clean(d.Search); len(s) > 0 {
		b.WriteString("search " + strings.Join(s, " ") + "\n")
	}
	if o := clean(d.Options); len(o) > 0 {
		b.WriteString("options " + strings.Join(o, " ") + "\n")
	}
	return b.String()
}
