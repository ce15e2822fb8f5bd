package cni

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// CNIArgs is what Tabby reads from CNI_ARGS ("K=V;K2=V2"). Nothing in it
// is required (Mesos never sets CNI_ARGS) and unknown keys are ignored, as
// if IgnoreUnknown were always set (Calico forces it too).
type CNIArgs struct {
	K8sPodNamespace        string
	K8sPodName             string
	K8sPodInfraContainerID string
	K8sPodUID              string
	IgnoreUnknown          bool
	// IPs are the addresses of IP= (comma-separated, with or without a
	// prefix length).
	IPs []netip.Addr
}

// IsK8s says whether the request comes from Kubernetes (both the pod's
// namespace and name are given).
func (a CNIArgs) IsK8s() bool { return a.K8sPodNamespace != "" && a.K8sPodName != "" }

// ParseCNIArgs parses CNI_ARGS. A pair without '=' or a bad IP= value is
// an error with code 4 (invalid environment variable) naming CNI_ARGS.
func ParseCNIArgs(s string) (CNIArgs, error) {
	var a CNIArgs
	for pair := range strings.SplitSeq(s, ";") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return CNIArgs{}, Errorf(types.ErrInvalidEnvironmentVariables,
				"invalid CNI_ARGS: pair %q is not KEY=VALUE", pair)
		}
		switch strings.TrimSpace(k) {
		case "K8S_POD_NAMESPACE":
			a.K8sPodNamespace = v
		case "K8S_POD_NAME":
			a.K8sPodName = v
		case "K8S_POD_INFRA_CONTAINER_ID":
			a.K8sPodInfraContainerID = v
		case "K8S_POD_UID":
			a.K8sPodUID = v
		case "IgnoreUnknown":
			switch strings.ToLower(v) {
			case "1", "true":
				a.IgnoreUnknown = true
			case "0", "false", "":
			default:
				return CNIArgs{}, Errorf(types.ErrInvalidEnvironmentVariables,
					"invalid CNI_ARGS: IgnoreUnknown=%q is not a boolean (want 1, 0, true or false)", v)
			}
		case "IP":
			for ip := range strings.SplitSeq(v, ",") {
				addr, err := parseIPOrPrefix(strings.TrimSpace(ip))
				if err != nil {
					return CNIArgs{}, Errorf(types.ErrInvalidEnvironmentVariables,
						"invalid CNI_ARGS: IP=%q: %q is not an IP address", v, ip)
				}
				a.IPs = append(a.IPs, addr)
			}
		}
	}
	return a, nil
}

// String renders the args back in CNI_ARGS form (known keys only).
func (a CNIArgs) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, fmt.Sprintf("%s=%s", k, v))
		}
	}
	if a.IgnoreUnknown {
		add("IgnoreUnknown", "1")
	}
	add("K8S_POD_NAMESPACE", a.K8sPodNamespace)
	add("K8S_POD_NAME", a.K8sPodName)
	add("K8S_POD_INFRA_CONTAINER_ID", a.K8sPodInfraContainerID)
	add("K8S_POD_UID", a.K8sPodUID)
	if len(a.IPs) > 0 {
		ips := make([]string, len(a.IPs))
		for i, ip := range a.IPs {
			ips[i] = ip.String()
		}
		add("IP", strings.Join(ips, ","))
	}
	return strings.Join(parts, ";")
}
