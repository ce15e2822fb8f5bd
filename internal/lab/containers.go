package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// RunSpec describes a container to start.
type RunSpec struct {
	// Name is unique in the lab: [a-z0-9] and inner hyphens, at most 63.
	Name string
	// Node is the host (name, Mesos agent ID or fabric IP).
	Node string
	// Namespace is the endpoint's namespace ("" or "default": none).
	Namespace string
	// Network is the CNI network (default DefaultNetwork).
	Network string
	// Labels become NetworkInfo labels (Mesos) or args.cni.labels.
	Labels []KeyValue
	// MesosApp, when set, makes the lab attach the container as Mesos
	// does and report it as a Marathon task of that app ("/group/app").
	MesosApp string
	// Command runs inside the container, detached; output goes to a log.
	Command []string
	// Ports are port mappings: the portMappings capability a CNI runtime
	// passes, or NetworkInfo.port_mappings for a Mesos app.
	Ports []PortMapping
	// NamedPorts are the container's named ports (args.cni.ports), which
	// policy rules can name.
	NamedPorts []NamedPort
}

// PortMapping publishes a container port on its host.
type PortMapping struct {
	HostPort      uint16 `json:"hostPort"`
	ContainerPort uint16 `json:"containerPort"`
	// Protocol is tcp (default) or udp.
	Protocol string `json:"protocol,omitempty"`
	// HostIP limits the mapping to one host address (CNI only: Mesos
	// port mappings have none).
	HostIP string `json:"hostIP,omitempty"`
}

func (p PortMapping) validate(i int, mesos bool) error {
	var errs []error
	if p.HostPort == 0 {
		errs = append(errs, fmt.Errorf("ports[%d].hostPort: required", i))
	}
	if p.ContainerPort == 0 {
		errs = append(errs, fmt.Errorf("ports[%d].containerPort: required", i))
	}
	switch strings.ToLower(p.Protocol) {
	case "", "tcp", "udp":
	default:
		errs = append(errs, fmt.Errorf("ports[%d].protocol %q: want tcp or udp", i, p.Protocol))
	}
	if p.HostIP != "" {
		if _, err := netip.ParseAddr(p.HostIP); err != nil {
			errs = append(errs, fmt.Errorf("ports[%d].hostIP %q: not an IP address", i, p.HostIP))
		} else if mesos {
			errs = append(errs, fmt.Errorf("ports[%d].hostIP %q: Mesos port mappings have no host IP", i, p.HostIP))
		}
	}
	return errors.Join(errs...)
}

// ParseLabel parses "key=value" (the value may be empty).
func ParseLabel(s string) (KeyValue, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return KeyValue{}, fmt.Errorf("label %q: want key=value", s)
	}
	k = strings.TrimSpace(k)
	if k == "" {
		return KeyValue{}, fmt.Errorf("label %q: empty key", s)
	}
	if strings.ContainsAny(k, " \t\n\x00") || strings.ContainsAny(v, "\n\x00") {
		return KeyValue{}, fmt.Errorf("label %q: keys may not hold blanks, values no newlines", s)
	}
	return KeyValue{Key: k, Value: v}, nil
}

func validDNSLabel(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func validNetworkName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case (r == '-' || r == '_' || r == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Validate checks a spec (not whether its node exists); errors name the
// field and the value.
func (s RunSpec) Validate() error {
	var errs []error
	if !validDNSLabel(s.Name, 63) {
		errs = append(errs, fmt.Errorf("name %q: want lower-case letters, digits and inner hyphens, at most 63", s.Name))
	}
	if s.Node == "" {
		errs = append(errs, errors.New("node: required"))
	}
	if s.Namespace != "" && !validDNSLabel(s.Namespace, 63) {
		errs = append(errs, fmt.Errorf("namespace %q: want lower-case letters, digits and inner hyphens, at most 63", s.Namespace))
	}
	if s.Network != "" && !validNetworkName(s.Network) {
		errs = append(errs, fmt.Errorf("network %q: want letters, digits, '-', '_' and '.', starting with a letter or digit", s.Network))
	}
	seen := map[string]bool{}
	for _, l := range s.Labels {
		if _, err := ParseLabel(l.Key + "=" + l.Value); err != nil {
			errs = append(errs, err)
		}
		if seen[l.Key] {
			errs = append(errs, fmt.Errorf("label %q: given twice", l.Key))
		}
		seen[l.Key] = true
	}
	if s.MesosApp != "" {
		if _, err := NormalizeMesosApp(s.MesosApp); err != nil {
			errs = append(errs, err)
		}
	}
	for i, p := range s.Ports {
		if err := p.validate(i, s.MesosApp != ""); err != nil {
			errs = append(errs, err)
		}
	}
	if err := validateNamedPorts(s.NamedPorts, s.MesosApp != ""); err != nil {
		errs = append(errs, err)
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		errs = append(errs, errors.New("command: required (after --)"))
	}
	return errors.Join(errs...)
}

// Containers lists the lab's containers.
func (l *Lab) Containers() ([]Container, error) { return readContainers(l.l) }

// Container finds one container by name.
func (l *Lab) Container(name string) (Container, error) {
	cs, err := readContainers(l.l)
	if err != nil {
		return Container{}, err
	}
	for _, c := range cs {
		if c.Name == name {
			return c, nil
		}
	}
	return Container{}, fmt.Errorf("lab %s: no container %q (`tabby lab ls %s` lists them)", l.st.Name, name, l.st.Name)
}

// ContainerLog is the file holding a container's output.
func (l *Lab) ContainerLog(name string) string { return filepath.Join(l.l.container(name), "log") }

func (l *Lab) containerPidFile(name string) string { return filepath.Join(l.l.container(name), "pid") }

// Running reports whether a container's command still runs.
func (l *Lab) Running(name string) bool {
	p, err := readPidFile(l.containerPidFile(name))
	return err == nil && p.alive()
}

// Run creates a container on a host, attaches it through tabby-cni and
// starts its command. On failure nothing of it is left.
func (l *Lab) Run(ctx context.Context, spec RunSpec) (_ *Container, err error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("lab %s: run: %w", l.st.Name, err)
	}
	h, ok := l.st.Host(spec.Node)
	if !ok {
		return nil, fmt.Errorf("run %s: %w", spec.Name, l.unknownHost(spec.Node))
	}
	if err := findCommand(spec.Command[0]); err != nil {
		return nil, fmt.Errorf("run %s: %w", spec.Name, err)
	}
	network := spec.Network
	if network == "" {
		network = DefaultNetwork
	}
	c := Container{
		Name:        spec.Name,
		Node:        h.Name,
		Namespace:   spec.Namespace,
		Network:     network,
		NetNS:       ContainerNamespace(l.st.Name, spec.Name),
		ContainerID: newContainerID(),
		IfName:      ContainerIfName,
		Command:     spec.Command,
		Ports:       spec.Ports,
		NamedPorts:  spec.NamedPorts,
		Phase:       PhaseCreating,
		Created:     time.Now().UTC(),
	}
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if len(spec.Labels) > 0 {
		c.Labels = map[string]string{}
		for _, kv := range spec.Labels {
			c.Labels[kv.Key] = kv.Value
		}
	}
	if spec.MesosApp != "" {
		app, _ := NormalizeMesosApp(spec.MesosApp)
		c.ContainerID = newUUID() // a Mesos ContainerID
		name, id := MarathonNames(app, newUUID())
		labels := append([]KeyValue(nil), spec.Labels...)
		if spec.Namespace != "" {
			labels = append(labels, KeyValue{Key: "projectcalico.org/namespace", Value: spec.Namespace})
		}
		c.Mesos = &MarathonTask{App: app, TaskID: id, TaskName: name, SlaveID: h.ID, NetworkLabels: labels}
	}
	if err := l.reserve(h, c); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if cerr := l.destroy(context.WithoutCancel(ctx), &c, true); cerr != nil {
				err = errors.Join(err, fmt.Errorf("and cleaning up: %w", cerr))
			}
		}
	}()
	if err := os.MkdirAll(l.l.container(c.Name), 0o755); err != nil {
		return nil, err
	}
	if spec.Namespace != "" {
		if err := l.ensureNamespace(ctx, spec.Namespace); err != nil {
			return nil, fmt.Errorf("run %s: %w", c.Name, err)
		}
	}
	if _, err := netns.Create(c.NetNS); err != nil {
		return nil, fmt.Errorf("run %s: %w", c.Name, err)
	}
	if err := setLoopbackUp(c.NetNS); err != nil {
		return nil, fmt.Errorf("run %s: %w", c.Name, err)
	}
	res, err := l.cniAdd(ctx, h, &c)
	if err != nil {
		return nil, fmt.Errorf("run %s on %s: %w", c.Name, h.Name, err)
	}
	c.IPs, c.DNS = res.IPs, res.DNS
	if err := writeEtcResolv(c.NetNS, c.DNS); err != nil {
		return nil, err
	}
	env := []string{"PATH=" + mesosPath, "HOME=/", "HOSTNAME=" + c.Name, "TABBY_LAB=" + l.st.Name, "TABBY_LAB_CONTAINER=" + c.Name}
	if c.Mesos != nil {
		env = append(env, "MESOS_TASK_ID="+c.Mesos.TaskID, "MARATHON_APP_ID="+c.Mesos.App)
	}
	if _, err := l.proc.start(procSpec{
		Namespace: c.NetNS,
		Argv:      c.Command,
		Log:       l.ContainerLog(c.Name),
		PidFile:   l.containerPidFile(c.Name),
		Env:       env,
	}); err != nil {
		return nil, fmt.Errorf("run %s: %w", c.Name, err)
	}
	c.Phase = PhaseRunning
	if err := l.updateContainer(c); err != nil {
		return nil, err
	}
	return &c, nil
}

// reserve records a new container (phase creating) under the lab lock,
// refusing duplicates and a lab that is not ready.
func (l *Lab) reserve(h Node, c Container) error {
	lk, err := lockLab(l.l)
	if err != nil {
		return err
	}
	defer lk.unlock()
	st, err := readState(l.root, l.st.Name)
	if err != nil {
		return fmt.Errorf("lab %s: %w", l.st.Name, err)
	}
	if st.Phase != PhaseReady {
		return fmt.Errorf("lab %s is %s, not ready", l.st.Name, st.Phase)
	}
	cs, err := readContainers(l.l)
	if err != nil {
		return err
	}
	for _, o := range cs {
		if o.Name == c.Name {
			return fmt.Errorf("lab %s: container %q exists already (on %s; `tabby lab rm %s %s` removes it)", l.st.Name, c.Name, o.Node, l.st.Name, c.Name)
		}
	}
	if netns.Exists(netns.Path(c.NetNS)) {
		return fmt.Errorf("lab %s: namespace %s exists already (a leftover?)", l.st.Name, c.NetNS)
	}
	if err := l.ensureNetwork(h, c.Network); err != nil {
		return err
	}
	return writeContainers(l.l, append(cs, c))
}

// updateContainer replaces a container's record; dropContainer removes it.
func (l *Lab) updateContainer(c Container) error {
	return l.editContainers(func(cs []Container) []Container {
		for i := range cs {
			if cs[i].Name == c.Name {
				cs[i] = c
			}
		}
		return cs
	})
}

func (l *Lab) dropContainer(name string) error {
	return l.editContainers(func(cs []Container) []Container {
		out := cs[:0]
		for _, c := range cs {
			if c.Name != name {
				out = append(out, c)
			}
		}
		return out
	})
}

func (l *Lab) editContainers(f func([]Container) []Container) error {
	lk, err := lockLab(l.l)
	if err != nil {
		return err
	}
	defer lk.unlock()
	cs, err := readContainers(l.l)
	if err != nil {
		return err
	}
	return writeContainers(l.l, f(cs))
}

// Remove stops a container, detaches it (CNI DEL) and deletes it. With
// force, a failed DEL (say, the host's agent is down) does not stop the
// removal.
func (l *Lab) Remove(ctx context.Context, name string, force bool) error {
	c, err := l.Container(name)
	if err != nil {
		return err
	}
	return l.destroy(ctx, &c, force)
}

// destroy undoes Run in reverse: the command (and anything else in the
// namespace), CNI DEL, the netns handle, the namespace, its files, the
// record. A DEL failure keeps the record (and the namespace) unless force.
func (l *Lab) destroy(ctx context.Context, c *Container, force bool) error {
	var errs []error
	if err := stopPidFile(l.containerPidFile(c.Name), 5*time.Second); err != nil {
		errs = append(errs, err)
	}
	if ino, err := nsInode(netns.Path(c.NetNS)); err == nil {
		if err := stopAll(procsInNamespaces(map[uint64]bool{ino: true}), 3*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.cniDel(ctx, c); err != nil {
		if !force {
			return fmt.Errorf("remove %s: %w (the container is stopped; retry, or force)", c.Name, errors.Join(append(errs, err)...))
		}
		l.log.Warn("CNI DEL failed; removing the container anyway", "container", c.Name, "error", err)
	}
	if c.Mesos != nil {
		if err := unmount(l.mesosHandle(c)); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(filepath.Join(l.l.mesosRoot(c.Node), c.ContainerID)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := netns.Delete(c.NetNS); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(filepath.Join(EtcNetnsDir, c.NetNS)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(l.l.container(c.Name)); err != nil {
		errs = append(errs, err)
	}
	if err := l.dropContainer(c.Name); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove %s: %w", c.Name, errors.Join(errs...))
	}
	return nil
}

// ContainerCommand builds a command that runs argv inside a container
// (as `ip netns exec` does, with its resolv.conf). The caller wires stdio
// and runs it.
func (l *Lab) ContainerCommand(ctx context.Context, name string, argv []string) (*exec.Cmd, error) {
	c, err := l.Container(name)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("exec: a command is required (after --)")
	}
	return l.proc.command(ctx, c.NetNS, argv), nil
}

// NodeCommand builds a command that runs argv on a node: the master, a
// host (by name, Mesos ID or IP), the router or the fabric.
func (l *Lab) NodeCommand(ctx context.Context, node string, argv []string) (*exec.Cmd, error) {
	ns := ""
	switch node {
	case "fabric":
		ns = l.st.Fabric
	case RouterNode:
		if l.st.Router != nil {
			ns = l.st.Router.Namespace
		}
	default:
		if n, ok := l.st.Node(node); ok {
			ns = n.Namespace
		}
	}
	if ns == "" {
		return nil, fmt.Errorf("lab %s: no node %q (`tabby lab nodes %s` lists them)", l.st.Name, node, l.st.Name)
	}
	if len(argv) == 0 {
		return nil, errors.New("a command is required")
	}
	return l.proc.command(ctx, ns, argv), nil
}

// findCommand checks that a container's command exists: a path, or a
// name on the PATH containers get.
func findCommand(name string) error {
	if strings.Contains(name, "/") {
		if fi, err := os.Stat(name); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("command %q: not an executable file", name)
		}
		return nil
	}
	for _, dir := range filepath.SplitList(mesosPath) {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return nil
		}
	}
	return fmt.Errorf("command %q: not found in %s", name, mesosPath)
}
