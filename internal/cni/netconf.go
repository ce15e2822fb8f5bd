package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// Defaults of the network configuration.
const (
	DefaultAgentSocket   = "/run/tabby/agent.sock"
	DefaultTimeout       = 60 * time.Second // ADD, DEL, CHECK, GC
	DefaultStatusTimeout = 10 * time.Second // STATUS
	maxTimeoutSeconds    = 3600
	maxSocketPathLen     = 107 // sun_path is 108 bytes with its NUL
)

// Plugin types: the runtime finds the binary by the config's type.
const (
	TypeAttach = "tabby"      // full attach: addresses, veth, routes, policy
	TypeIPAM   = "tabby-ipam" // addresses only, as the IPAM of another plugin
)

// NetConf is the network configuration a runtime gives the plugin on
// stdin. Unknown keys are accepted and ignored (Calico's etcd_endpoints,
// datastore_type, policy, kubernetes, … included); the exact stdin travels
// to the agent next to this parsed form.
type NetConf struct {
	// CNIVersion is the caller's version; "" (absent) means 0.2.0 result
	// semantics, as Calico.
	CNIVersion string `json:"cniVersion,omitempty"`
	Name       string `json:"name"`
	Type       string `json:"type"`

	AgentSocket    string `json:"agent_socket,omitempty"`    // default DefaultAgentSocket
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"` // default DefaultTimeout
	MTU            int    `json:"mtu,omitempty"`             // 0: the agent's default
	Nodename       string `json:"nodename,omitempty"`        // "": the agent's node
	LogLevel       string `json:"log_level,omitempty"`

	IPAM          IPAMConf        `json:"ipam"`
	DNS           types.DNS       `json:"dns"`
	Args          Args            `json:"args"`
	RuntimeConfig RuntimeConfig   `json:"runtimeConfig"`
	Capabilities  map[string]bool `json:"capabilities,omitempty"`
	// PrevResult is the previous result in the caller's version (CHECK,
	// DEL, chained ADD); see ParsePrevResult.
	PrevResult json.RawMessage `json:"prevResult,omitempty"`

	// ValidAttachments is GC's cni.dev/valid-attachments; libcni also sends
	// the misspelt cni.dev/attachments of early 1.1 drafts.
	ValidAttachments  []Attachment `json:"cni.dev/valid-attachments,omitempty"`
	LegacyAttachments []Attachment `json:"cni.dev/attachments,omitempty"`
}

// IPAMConf is the "ipam" section.
type IPAMConf struct {
	Type string `json:"type,omitempty"`
	// AssignIPv4 and AssignIPv6 are strings in Calico's configs ("true",
	// "false"); JSON booleans are accepted too. Unset, a family is
	// assigned when a pool of it can serve the node (the agent decides:
	// agent.requestFamilies), so dual-stack needs no setting.
	AssignIPv4 *Bool    `json:"assign_ipv4,omitempty"`
	AssignIPv6 *Bool    `json:"assign_ipv6,omitempty"`
	IPv4Pools  []string `json:"ipv4_pools,omitempty"` // CIDRs or IPPool names
	IPv6Pools  []string `json:"ipv6_pools,omitempty"`
	IPAddrs    []string `json:"ipAddrs,omitempty"` // specific addresses to assign
	// AgentSocket is read when the top-level agent_socket is absent, so a
	// plugin delegating to tabby-ipam can keep Tabby's keys in "ipam".
	AgentSocket string `json:"agent_socket,omitempty"`
}

// WantIPv4 and WantIPv6 read the settings with Calico's literal defaults
// (IPv4 yes, IPv6 no), for code that does not know the pools (the test
// fake of cnitest); the agent decides unset families from the pools.
func (c IPAMConf) WantIPv4() bool { return c.AssignIPv4 == nil || c.AssignIPv4.Value }

// WantIPv6: see WantIPv4.
func (c IPAMConf) WantIPv6() bool { return c.AssignIPv6 != nil && c.AssignIPv6.Value }

// Bool is a boolean written as JSON true/false or as the string "true" or
// "false". Any other value is kept and reported by NetConf.Validate with
// the field's name.
type Bool struct {
	Value   bool
	invalid string
}

func (b *Bool) UnmarshalJSON(data []byte) error {
	switch s := strings.TrimSpace(string(data)); strings.ToLower(s) {
	case "true", `"true"`:
		*b = Bool{Value: true}
	case "false", `"false"`:
		*b = Bool{}
	default:
		*b = Bool{invalid: s}
	}
	return nil
}

func (b Bool) MarshalJSON() ([]byte, error) { return strconv.AppendBool(nil, b.Value), nil }

// Args is the "args" object. Keys other than these are ignored.
type Args struct {
	Mesos *MesosArgs `json:"org.apache.mesos,omitempty"`
	CNI   *CNIArgsIn `json:"cni,omitempty"`
}

// MesosArgs is what the Mesos network/cni isolator injects.
type MesosArgs struct {
	NetworkInfo *MesosNetworkInfo `json:"network_info,omitempty"`
}

// MesosNetworkInfo is Mesos's NetworkInfo protobuf as snake_case JSON.
type MesosNetworkInfo struct {
	Name         string             `json:"name,omitempty"`
	Labels       MesosLabels        `json:"labels"`
	PortMappings []MesosPortMapping `json:"port_mappings,omitempty"`
	Groups       []string           `json:"groups,omitempty"`
	IPAddresses  []MesosIPAddress   `json:"ip_addresses,omitempty"`
}

// MesosLabels is the protobuf's Labels wrapper: {"labels": [...]}.
type MesosLabels struct {
	Labels []Label `json:"labels,omitempty"`
}

// Label is a key/value pair (Mesos labels, args.cni.labels).
type Label struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

// MesosPortMapping is one NetworkInfo.PortMapping.
type MesosPortMapping struct {
	HostPort      uint32 `json:"host_port"`
	ContainerPort uint32 `json:"container_port"`
	Protocol      string `json:"protocol,omitempty"` // default tcp
}

// MesosIPAddress is one NetworkInfo.IPAddress; Marathon sends [{}].
type MesosIPAddress struct {
	Protocol  string `json:"protocol,omitempty"` // IPv4 or IPv6
	IPAddress string `json:"ip_address,omitempty"`
}

// CNIArgsIn is args.cni of the CNI conventions.
type CNIArgsIn struct {
	IPs    []string `json:"ips,omitempty"`
	Labels []Label  `json:"labels,omitempty"`
	// Ports are the container's named ports (Tabby extension, as
	// Kubernetes container ports): they become the endpoint's ports,
	// which policy rules can name.
	Ports []NamedPort `json:"ports,omitempty"`
}

// NamedPort is one args.cni.ports entry.
type NamedPort struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol,omitempty"` // default TCP
	Port     int    `json:"port"`
}

// RuntimeConfig holds the capability arguments the runtime injected.
type RuntimeConfig struct {
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	IPs          []string      `json:"ips,omitempty"`
	MAC          string        `json:"mac,omitempty"`
}

// PortMapping is one runtimeConfig.portMappings entry.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"` // default tcp
	HostIP        string `json:"hostIP,omitempty"`
}

// Attachment is one still-valid attachment in a GC request.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// Attachments returns GC's list of valid attachments, nil when the
// request carries none (which is not the same as an empty list).
func (c *NetConf) Attachments() []Attachment {
	if c.ValidAttachments != nil {
		return c.ValidAttachments
	}
	return c.LegacyAttachments
}

// Socket returns the agent socket path: agent_socket, else
// ipam.agent_socket, else DefaultAgentSocket.
func (c *NetConf) Socket() string {
	switch {
	case c.AgentSocket != "":
		return c.AgentSocket
	case c.IPAM.AgentSocket != "":
		return c.IPAM.AgentSocket
	}
	return DefaultAgentSocket
}

// Timeout returns how long the plugin waits for the agent on cmd.
func (c *NetConf) Timeout(cmd string) time.Duration {
	if cmd == CmdStatus {
		if c.TimeoutSeconds > 0 && time.Duration(c.TimeoutSeconds)*time.Second < DefaultStatusTimeout {
			return time.Duration(c.TimeoutSeconds) * time.Second
		}
		return DefaultStatusTimeout
	}
	if c.TimeoutSeconds > 0 {
		return time.Duration(c.TimeoutSeconds) * time.Second
	}
	return DefaultTimeout
}

// ParseConfig decodes and validates a network configuration. Errors carry
// CNI codes: 6 when the input is not a JSON object, 1 for an unsupported
// cniVersion, 7 naming the field and its value for anything else. On a
// validation error the returned NetConf holds what could be decoded (DEL
// uses it to release what an older, laxer plugin allocated); it is nil
// when the input is not JSON.
func ParseConfig(data []byte) (*NetConf, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, Errorf(types.ErrDecodingFailure, "network config is empty")
	}
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, Errorf(types.ErrDecodingFailure, "network config is not valid JSON: %v (at byte %d)", se, se.Offset)
		case errors.As(err, &te) && te.Field == "":
			return nil, Errorf(types.ErrDecodingFailure, "network config must be a JSON object, not %s", te.Value)
		case errors.As(err, &te):
			return conf, describeTypeError(data, te)
		default:
			return nil, Errorf(types.ErrDecodingFailure, "decode network config: %w", err)
		}
	}
	if err := conf.Validate(); err != nil {
		return conf, err
	}
	return conf, nil
}

// Validate checks every field; the first problem is returned as a CNI
// error naming the field and its value.
func (c *NetConf) Validate() error {
	if c.CNIVersion != "" && !slices.Contains(SupportedVersions, c.CNIVersion) {
		return Errorf(types.ErrIncompatibleCNIVersion, "unsupported CNI version: field \"cniVersion\": %q is not one of %s",
			c.CNIVersion, strings.Join(SupportedVersions, ", "))
	}
	if c.Name == "" {
		return missing("name")
	}
	if !validName(c.Name) {
		return fieldErr("name", c.Name, "must start with a letter or digit and hold only letters, digits, '_', '.' and '-'")
	}
	if c.Type == "" {
		return missing("type")
	}
	if strings.ContainsAny(c.Type, `/\`) {
		return fieldErr("type", c.Type, "must be a plugin name, not a path")
	}
	if err := validateSocket("agent_socket", c.AgentSocket); err != nil {
		return err
	}
	if err := validateSocket("ipam.agent_socket", c.IPAM.AgentSocket); err != nil {
		return err
	}
	if c.TimeoutSeconds < 0 || c.TimeoutSeconds > maxTimeoutSeconds {
		return fieldErr("timeout_seconds", c.TimeoutSeconds, "is out of range 1-%d", maxTimeoutSeconds)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fieldErr("mtu", c.MTU, "is out of range 68-65535")
	}
	if c.Nodename != "" && (len(c.Nodename) > 253 || !validName(c.Nodename)) {
		return fieldErr("nodename", c.Nodename, "is not a node name (letters, digits, '_', '.', '-'; at most 253)")
	}
	if !validLogLevel(c.LogLevel) {
		return fieldErr("log_level", c.LogLevel, "is not a log level (debug, info, warning, error)")
	}
	if err := c.IPAM.validate(); err != nil {
		return err
	}
	if err := validateDNS(&c.DNS); err != nil {
		return err
	}
	if err := c.Args.validate(); err != nil {
		return err
	}
	if err := c.RuntimeConfig.validate(); err != nil {
		return err
	}
	for _, list := range []struct {
		name string
		atts []Attachment
	}{{"cni.dev/valid-attachments", c.ValidAttachments}, {"cni.dev/attachments", c.LegacyAttachments}} {
		for i, a := range list.atts {
			if a.ContainerID == "" {
				return missing(fmt.Sprintf("%s[%d].containerID", list.name, i))
			}
			if a.IfName == "" {
				return missing(fmt.Sprintf("%s[%d].ifname", list.name, i))
			}
		}
	}
	return nil
}

func validateSocket(field, path string) error {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) {
		return fieldErr(field, path, "must be an absolute path")
	}
	if len(path) > maxSocketPathLen {
		return fieldErr(field, path, "is longer than %d bytes (the limit of a unix socket path)", maxSocketPathLen)
	}
	return nil
}

func (c *IPAMConf) validate() error {
	if strings.ContainsAny(c.Type, `/\`) {
		return fieldErr("ipam.type", c.Type, "must be a plugin name, not a path")
	}
	if c.AssignIPv4 != nil && c.AssignIPv4.invalid != "" {
		return fieldErr("ipam.assign_ipv4", rawValue(c.AssignIPv4.invalid), `is not a boolean (want "true" or "false")`)
	}
	if c.AssignIPv6 != nil && c.AssignIPv6.invalid != "" {
		return fieldErr("ipam.assign_ipv6", rawValue(c.AssignIPv6.invalid), `is not a boolean (want "true" or "false")`)
	}
	if c.AssignIPv4 != nil && !c.AssignIPv4.Value && c.AssignIPv6 != nil && !c.AssignIPv6.Value && len(c.IPAddrs) == 0 {
		return fieldErr("ipam.assign_ipv4", "false", "and ipam.assign_ipv6 false leave no address to assign")
	}
	for _, p := range []struct {
		field string
		pools []string
		v4    bool
	}{{"ipam.ipv4_pools", c.IPv4Pools, true}, {"ipam.ipv6_pools", c.IPv6Pools, false}} {
		for i, pool := range p.pools {
			field := fmt.Sprintf("%s[%d]", p.field, i)
			if strings.TrimSpace(pool) == "" {
				return fieldErr(field, pool, "is empty (want a CIDR or an IPPool name)")
			}
			if pfx, err := netip.ParsePrefix(pool); err == nil {
				if pfx.Addr().Is4() != p.v4 {
					return fieldErr(field, pool, "is not an %s CIDR", family(p.v4))
				}
				continue
			}
			if strings.ContainsAny(pool, "/ \t\n") {
				return fieldErr(field, pool, "is neither a CIDR nor an IPPool name")
			}
		}
	}
	for i, a := range c.IPAddrs {
		if _, err := netip.ParseAddr(a); err != nil {
			return fieldErr(fmt.Sprintf("ipam.ipAddrs[%d]", i), a, "is not an IP address")
		}
	}
	return nil
}

func validateDNS(d *types.DNS) error {
	for i, ns := range d.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			return fieldErr(fmt.Sprintf("dns.nameservers[%d]", i), ns, "is not an IP address")
		}
	}
	if strings.ContainsAny(d.Domain, " \t\n") {
		return fieldErr("dns.domain", d.Domain, "is not a domain name")
	}
	for i, s := range d.Search {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			return fieldErr(fmt.Sprintf("dns.search[%d]", i), s, "is not a domain name")
		}
	}
	for i, o := range d.Options {
		if o == "" || strings.ContainsAny(o, "\n") {
			return fieldErr(fmt.Sprintf("dns.options[%d]", i), o, "is not a resolver option")
		}
	}
	return nil
}

func (a *Args) validate() error {
	if a.Mesos != nil && a.Mesos.NetworkInfo != nil {
		const base = `args["org.apache.mesos"].network_info`
		ni := a.Mesos.NetworkInfo
		for i, pm := range ni.PortMappings {
			f := fmt.Sprintf("%s.port_mappings[%d]", base, i)
			if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
				return fieldErr(f+".container_port", pm.ContainerPort, "is out of range 1-65535")
			}
			if pm.HostPort > 65535 {
				return fieldErr(f+".host_port", pm.HostPort, "is out of range 0-65535")
			}
			if _, ok := canonicalProtocol(pm.Protocol); !ok {
				return fieldErr(f+".protocol", pm.Protocol, "is not tcp, udp or sctp")
			}
		}
		for i, ip := range ni.IPAddresses {
			f := fmt.Sprintf("%s.ip_addresses[%d]", base, i)
			switch strings.ToLower(ip.Protocol) {
			case "", "ipv4", "ipv6":
			default:
				return fieldErr(f+".protocol", ip.Protocol, "is not IPv4 or IPv6")
			}
			if ip.IPAddress != "" {
				if _, err := netip.ParseAddr(ip.IPAddress); err != nil {
					return fieldErr(f+".ip_address", ip.IPAddress, "is not an IP address")
				}
			}
		}
	}
	if a.CNI != nil {
		for i, s := range a.CNI.IPs {
			if _, err := parseIPOrPrefix(s); err != nil {
				return fieldErr(fmt.Sprintf("args.cni.ips[%d]", i), s, "is not an IP address")
			}
		}
		for i, p := range a.CNI.Ports {
			f := fmt.Sprintf("args.cni.ports[%d]", i)
			if len(p.Name) > 15 || !portNameRE.MatchString(p.Name) {
				return fieldErr(f+".name", p.Name, "is not a port name (a letter, then letters, digits and '-', at most 15)")
			}
			if p.Port < 1 || p.Port > 65535 {
				return fieldErr(f+".port", p.Port, "is out of range 1-65535")
			}
			if _, ok := canonicalProtocol(p.Protocol); !ok {
				return fieldErr(f+".protocol", p.Protocol, "is not tcp, udp or sctp")
			}
		}
	}
	return nil
}

// portNameRE is an IANA service name, as policy rules name ports (the
// api package's isPortName; this package may not import it).
var portNameRE = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9]|-[A-Za-z0-9])*$`)

func (r *RuntimeConfig) validate() error {
	for i, pm := range r.PortMappings {
		f := fmt.Sprintf("runtimeConfig.portMappings[%d]", i)
		if pm.HostPort < 1 || pm.HostPort > 65535 {
			return fieldErr(f+".hostPort", pm.HostPort, "is out of range 1-65535")
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return fieldErr(f+".containerPort", pm.ContainerPort, "is out of range 1-65535")
		}
		if _, ok := canonicalProtocol(pm.Protocol); !ok {
			return fieldErr(f+".protocol", pm.Protocol, "is not tcp, udp or sctp")
		}
		if pm.HostIP != "" {
			if _, err := netip.ParseAddr(pm.HostIP); err != nil {
				return fieldErr(f+".hostIP", pm.HostIP, "is not an IP address")
			}
		}
	}
	for i, s := range r.IPs {
		if _, err := parseIPOrPrefix(s); err != nil {
			return fieldErr(fmt.Sprintf("runtimeConfig.ips[%d]", i), s, "is not an IP address")
		}
	}
	if r.MAC != "" {
		if _, err := net.ParseMAC(r.MAC); err != nil {
			return fieldErr("runtimeConfig.mac", r.MAC, "is not a MAC address")
		}
	}
	return nil
}

// parseIPOrPrefix reads "10.0.0.5" or "10.0.0.5/24" and returns the address.
func parseIPOrPrefix(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// canonicalProtocol maps a port mapping protocol to the resource spelling
// (TCP, UDP, SCTP); "" is TCP.
func canonicalProtocol(p string) (string, bool) {
	switch strings.ToLower(p) {
	case "", "tcp":
		return "TCP", true
	case "udp":
		return "UDP", true
	case "sctp":
		return "SCTP", true
	}
	return "", false
}

func family(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}

// validName is the CNI network-name rule (also used for node names).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

func validLogLevel(l string) bool {
	switch strings.ToLower(l) {
	case "", "trace", "debug", "info", "warn", "warning", "error", "fatal", "panic", "none", "off":
		return true
	}
	return false
}

func missing(field string) error {
	return Errorf(types.ErrInvalidNetworkConfig, "invalid network config: field %q is missing", field)
}

// rawValue is JSON text shown as it was written.
type rawValue string

func fieldErr(field string, value any, format string, args ...any) error {
	return Errorf(types.ErrInvalidNetworkConfig, "invalid network config: field %q: %s %s",
		field, showValue(value), fmt.Sprintf(format, args...))
}

// showValue renders a bad value for an error message, shortened.
func showValue(v any) string {
	var s string
	switch v := v.(type) {
	case rawValue:
		s = string(v)
	case string:
		s = strconv.Quote(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			s = fmt.Sprint(v)
		} else {
			s = string(b)
		}
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// describeTypeError names the field and shows the value a JSON type
// mismatch was about.
func describeTypeError(data []byte, te *json.UnmarshalTypeError) error {
	want := jsonKind(te.Type)
	var root any
	if json.Unmarshal(data, &root) == nil {
		if v, ok := lookupPath(root, strings.Split(te.Field, ".")); ok {
			field := te.Field
			// A map value's error names the map, not the key: find it.
			if m, isMap := v.(map[string]any); isMap && want != "an object" {
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				for _, k := range keys {
					if strings.HasSuffix(describeJSON(m[k]), " "+te.Value) {
						field, v = field+"."+k, m[k]
						break
					}
				}
			}
			return fieldErr(field, v, "is %s, want %s", describeJSON(v), want)
		}
	}
	return Errorf(types.ErrInvalidNetworkConfig, "invalid network config: field %q: got %s, want %s", te.Field, te.Value, want)
}

// lookupPath finds the value at a dotted path as json reports it. Keys may
// contain dots themselves ("org.apache.mesos"), so every split is tried;
// arrays are searched element by element.
func lookupPath(node any, segs []string) (any, bool) {
	if len(segs) == 0 {
		return node, true
	}
	switch n := node.(type) {
	case map[string]any:
		for j := len(segs); j >= 1; j-- {
			key := strings.Join(segs[:j], ".")
			for k, child := range n {
				if strings.EqualFold(k, key) {
					if v, ok := lookupPath(child, segs[j:]); ok {
						return v, true
					}
				}
			}
		}
	case []any:
		for _, e := range n {
			if v, ok := lookupPath(e, segs); ok {
				return v, true
			}
		}
	}
	return nil, false
}

func describeJSON(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "null"
}

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}
