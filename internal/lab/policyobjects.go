package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// NamedPort is a named port of a container, as Mesos discovery ports and
// Kubernetes container ports declare them; its JSON is an args.cni.ports
// entry.
type NamedPort struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"` // TCP, UDP or SCTP
	Port     uint16 `json:"port"`
}

// ParseNamedPort reads NAME=PORT/PROTO (PROTO tcp, udp or sctp; default tcp).
func ParseNamedPort(s string) (NamedPort, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok {
		return NamedPort{}, fmt.Errorf("port %q: want NAME=PORT/PROTO", s)
	}
	port, proto, _ := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return NamedPort{}, fmt.Errorf("port %q: %q is not a port (1-65535)", s, port)
	}
	p := NamedPort{Name: name, Protocol: strings.ToUpper(proto), Port: uint16(n)}
	if p.Protocol == "" {
		p.Protocol = "TCP"
	}
	return p, validateNamedPorts([]NamedPort{p}, false)
}

func validateNamedPorts(ps []NamedPort, mesos bool) error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range ps {
		if pp, err := api.ParsePort(p.Name); err != nil || pp.PortName == "" {
			errs = append(errs, fmt.Errorf("namedPorts[%d].name %q: want a letter, then letters, digits and '-', at most 15", i, p.Name))
		}
		switch p.Protocol {
		case "TCP", "UDP", "SCTP":
		default:
			errs = append(errs, fmt.Errorf("namedPorts[%d].protocol %q: want tcp, udp or sctp", i, p.Protocol))
		}
		if p.Port == 0 {
			errs = append(errs, fmt.Errorf("namedPorts[%d].port: required", i))
		}
		k := p.Name + "/" + p.Protocol
		if seen[k] {
			errs = append(errs, fmt.Errorf("namedPorts[%d]: %s given twice", i, k))
		}
		seen[k] = true
	}
	if mesos && len(ps) > 0 {
		errs = append(errs, errors.New("namedPorts: a Mesos attach carries no port names (NetworkInfo has none); use them without --mesos-app"))
	}
	return errors.Join(errs...)
}

// client opens the lab's datastore for one operation.
func (l *Lab) withClient(ctx context.Context, f func(context.Context, *datastore.Client) error) error {
	s, err := l.connect(5 * time.Second)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return f(ctx, datastore.NewClient(s))
}

// ensureNamespace creates a Namespace object for ns unless one exists, so
// that `tabby get namespaces` lists it and it can be labelled.
func (l *Lab) ensureNamespace(ctx context.Context, ns string) error {
	if ns == api.DefaultNamespace {
		return nil
	}
	return l.withClient(ctx, func(ctx context.Context, c *datastore.Client) error {
		n := &api.Namespace{TypeMeta: api.TypeMeta{APIVersion: api.APIVersion, Kind: "Namespace"}, ObjectMeta: api.ObjectMeta{Name: ns}}
		api.SetDefaults(n)
		if _, err := c.Create(ctx, n); err != nil && !errors.Is(err, datastore.ErrExists) {
			return fmt.Errorf("create Namespace %s: %w", ns, err)
		}
		return nil
	})
}

// SetNamespace creates namespace ns or replaces its labels (namespace
// selectors follow at once); kubernetes.io/metadata.name is always set.
func (l *Lab) SetNamespace(ctx context.Context, ns string, labels map[string]string) error {
	n := &api.Namespace{TypeMeta: api.TypeMeta{APIVersion: api.APIVersion, Kind: "Namespace"},
		ObjectMeta: api.ObjectMeta{Name: ns, Labels: maps.Clone(labels)}}
	api.SetDefaults(n)
	if err := api.Validate(n); err != nil {
		return fmt.Errorf("lab %s: namespace %s: %w", l.st.Name, ns, err)
	}
	return l.withClient(ctx, func(ctx context.Context, c *datastore.Client) error {
		if _, _, err := c.Apply(ctx, n); err != nil {
			return fmt.Errorf("lab %s: write Namespace %s: %w", l.st.Name, ns, err)
		}
		return nil
	})
}

// reservedLabelPrefix marks the labels the agent adds to every endpoint;
// Relabel leaves them alone.
const reservedLabelPrefix = "projectcalico.org/"

// Relabel changes a running container's labels: set adds or changes,
// remove deletes. It rewrites the container's WorkloadEndpoint
// (compare-and-swap, retried on conflict), so policy follows at once, and
// the lab's record; it returns the container's new labels.
func (l *Lab) Relabel(ctx context.Context, name string, set map[string]string, remove []string) (map[string]string, error) {
	c, err := l.Container(name)
	if err != nil {
		return nil, err
	}
	for k := range set {
		if strings.HasPrefix(k, reservedLabelPrefix) {
			return nil, fmt.Errorf("lab %s: label %q: the agent sets %s labels", l.st.Name, k, reservedLabelPrefix)
		}
	}
	if slices.ContainsFunc(remove, func(k string) bool { return strings.HasPrefix(k, reservedLabelPrefix) }) {
		return nil, fmt.Errorf("lab %s: the agent sets %s labels; they cannot be removed", l.st.Name, reservedLabelPrefix)
	}
	edit := func(m map[string]string) map[string]string {
		m = maps.Clone(m)
		if m == nil {
			m = map[string]string{}
		}
		maps.Copy(m, set)
		for _, k := range remove {
			delete(m, k)
		}
		return m
	}
	err = l.withClient(ctx, func(ctx context.Context, dc *datastore.Client) error {
		return relabelEndpoint(ctx, dc, c, edit)
	})
	if err != nil {
		return nil, fmt.Errorf("lab %s: relabel %s: %w", l.st.Name, name, err)
	}
	c.Labels = edit(c.Labels)
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if err := l.updateContainer(c); err != nil {
		return nil, err
	}
	return c.Labels, nil
}

// relabelEndpoint rewrites the labels of c's WorkloadEndpoint with a
// compare-and-swap, re-reading and retrying (at most 10 times) when
// another writer got there first, so no concurrent change is lost.
func relabelEndpoint(ctx context.Context, dc *datastore.Client, c Container, edit func(map[string]string) map[string]string) error {
	for attempt := 0; ; attempt++ {
		w, err := containerEndpoint(ctx, dc, c)
		if err != nil {
			return err
		}
		w.Labels = edit(w.Labels)
		if err := api.Validate(w); err != nil {
			return err
		}
		_, err = dc.Update(ctx, w)
		if err == nil {
			return nil
		}
		if !errors.Is(err, datastore.ErrConflict) || attempt == 9 {
			return fmt.Errorf("update WorkloadEndpoint %s: %w", w.Name, err)
		}
	}
}

// containerEndpoint finds a container's WorkloadEndpoint by container ID.
func containerEndpoint(ctx context.Context, dc *datastore.Client, c Container) (*api.WorkloadEndpoint, error) {
	ns := c.Namespace
	if ns == "" {
		ns = api.DefaultNamespace
	}
	list, _, err := dc.List(ctx, "WorkloadEndpoint", ns)
	if err != nil {
		return nil, err
	}
	for _, r := range list {
		if w := r.(*api.WorkloadEndpoint); w.Spec.ContainerID == c.ContainerID {
			return w, nil
		}
	}
	return nil, fmt.Errorf("no WorkloadEndpoint of container %s (%s) in namespace %s", c.Name, c.ContainerID, ns)
}
