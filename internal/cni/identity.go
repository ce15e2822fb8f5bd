package cni

import (
	"net/netip"
	"regexp"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
)

// Orchestrators, as written in WorkloadEndpoint.spec.orchestrator.
const (
	OrchestratorMesos = "mesos"
	OrchestratorK8s   = "k8s"
	OrchestratorCNI   = "cni"
)

// DefaultNamespace is the namespace of non-Kubernetes endpoints.
const DefaultNamespace = "default"

// MesosNamespaceLabel is the Mesos label key that sets the endpoint's
// namespace (as Calico).
const MesosNamespaceLabel = "projectcalico.org/namespace"

// Identity is who a CNI request is for: everything the agent needs to
// name, label and find the endpoint, computed from the request alone.
type Identity struct {
	Orchestrator     string `json:"orchestrator"` // mesos, k8s or cni
	Namespace        string `json:"namespace"`
	Workload         string `json:"workload"`      // k8s pod name, else the container ID
	Pod              string `json:"pod,omitempty"` // k8s only
	ContainerID      string `json:"containerID"`
	InfraContainerID string `json:"infraContainerID,omitempty"` // K8S_POD_INFRA_CONTAINER_ID
	InterfaceName    string `json:"interfaceName"`
	Network          string `json:"network"`
	Node             string `json:"node,omitempty"` // netconf nodename; "": the agent's node
	// Labels come from Mesos NetworkInfo labels and args.cni.labels,
	// shortened and sanitized (MesosLabelValue, SanitizeMesosLabel).
	Labels map[string]string `json:"labels,omitempty"`
	Groups []string          `json:"groups,omitempty"` // Mesos netgroups
	Ports  []Port            `json:"ports,omitempty"`
	// RequestedIPs are specific addresses asked for: runtimeConfig.ips,
	// else args.cni.ips, else CNI_ARGS IP=, else ipam.ipAddrs.
	RequestedIPs []netip.Addr `json:"requestedIPs,omitempty"`
	IPAMHandle   string       `json:"ipamHandle"`
}

// Port is a port of the endpoint; its JSON matches the WorkloadEndpoint's
// ports[] entries.
type Port struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"` // TCP, UDP or SCTP
	Port     uint16 `json:"port"`
	HostPort uint16 `json:"hostPort,omitempty"`
	HostIP   string `json:"hostIP,omitempty"`
}

// HandleID is the IPAM handle of one attachment:
// <network>.<containerID>.<ifname>.
func HandleID(network, containerID, ifName string) string {
	return network + "." + containerID + "." + ifName
}

// IdentityFor computes the identity of an ADD, DEL or CHECK request from
// its NetConf, container ID, interface name and CNI_ARGS. It is a pure
// function; a bad CNI_ARGS is an error with code 4.
func IdentityFor(req *Request) (*Identity, error) {
	conf := req.NetConf
	if conf == nil {
		return nil, Errorf(types.ErrInvalidNetworkConfig, "request has no network config")
	}
	args, err := ParseCNIArgs(req.Args)
	if err != nil {
		return nil, err
	}
	id := &Identity{
		Orchestrator:  OrchestratorCNI,
		Namespace:     DefaultNamespace,
		Workload:      req.ContainerID,
		ContainerID:   req.ContainerID,
		InterfaceName: req.IfName,
		Network:       conf.Name,
		Node:          conf.Nodename,
		IPAMHandle:    HandleID(conf.Name, req.ContainerID, req.IfName),
	}
	labels := map[string]string{}
	if conf.Args.CNI != nil {
		for _, l := range conf.Args.CNI.Labels {
			addLabel(labels, l)
		}
		for _, p := range conf.Args.CNI.Ports {
			proto, _ := canonicalProtocol(p.Protocol)
			id.addPort(Port{Name: p.Name, Protocol: proto, Port: uint16(p.Port)})
		}
	}
	var mesos *MesosNetworkInfo
	if conf.Args.Mesos != nil {
		mesos = conf.Args.Mesos.NetworkInfo
		if mesos == nil {
			mesos = &MesosNetworkInfo{}
		}
	}
	switch {
	case mesos != nil:
		id.Orchestrator = OrchestratorMesos
		for _, l := range mesos.Labels.Labels {
			addLabel(labels, l)
			if l.Key == MesosNamespaceLabel {
				if ns := MesosLabelValue(l.Value); ns != "" {
					id.Namespace = ns
				}
			}
		}
		id.Groups = slices.Clone(mesos.Groups)
		for _, pm := range mesos.PortMappings {
			proto, _ := canonicalProtocol(pm.Protocol)
			id.addPort(Port{Protocol: proto, Port: uint16(pm.ContainerPort), HostPort: uint16(pm.HostPort)})
		}
	case args.IsK8s():
		id.Orchestrator = OrchestratorK8s
		id.Namespace = args.K8sPodNamespace
		id.Workload = args.K8sPodName
		id.Pod = args.K8sPodName
		id.InfraContainerID = args.K8sPodInfraContainerID
	case runtimeNameRE.MatchString(args.K8sPodName):
		// Podman (and nerdctl) send the container's name as K8S_POD_NAME
		// alone: the endpoint is named after it, not after the ID.
		id.Workload = args.K8sPodName
	}
	for _, pm := range conf.RuntimeConfig.PortMappings {
		proto, _ := canonicalProtocol(pm.Protocol)
		id.addPort(Port{Protocol: proto, Port: uint16(pm.ContainerPort), HostPort: uint16(pm.HostPort), HostIP: pm.HostIP})
	}
	if len(labels) > 0 {
		id.Labels = labels
	}
	id.RequestedIPs = requestedIPs(conf, args)
	return id, nil
}

// runtimeNameRE is a container name that can be part of an endpoint's
// name (lower case, digits, '.', '-'; at most 63 characters); other names
// leave the workload as the container ID.
var runtimeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

func addLabel(labels map[string]string, l Label) {
	if k := SanitizeMesosLabel(l.Key); k != "" {
		labels[k] = MesosLabelValue(l.Value)
	}
}

func (id *Identity) addPort(p Port) {
	if !slices.Contains(id.Ports, p) {
		id.Ports = append(id.Ports, p)
	}
}

// requestedIPs applies the CNI conventions' precedence: args beat CNI_ARGS.
func requestedIPs(conf *NetConf, args CNIArgs) []netip.Addr {
	parse := func(list []string) []netip.Addr {
		var out []netip.Addr
		for _, s := range list {
			if a, err := parseIPOrPrefix(s); err == nil {
				out = append(out, a)
			}
		}
		return out
	}
	switch {
	case len(conf.RuntimeConfig.IPs) > 0:
		return parse(conf.RuntimeConfig.IPs)
	case conf.Args.CNI != nil && len(conf.Args.CNI.IPs) > 0:
		return parse(conf.Args.CNI.IPs)
	case len(args.IPs) > 0:
		return slices.Clone(args.IPs)
	default:
		return parse(conf.IPAM.IPAddrs)
	}
}
