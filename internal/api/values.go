package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ASNumber is a BGP autonomous system number. It is written as a plain
// number and also read from the dotted "high.low" (asdot) form.
type ASNumber uint32

// DefaultASNumber is the AS number used when none is configured (as Calico).
const DefaultASNumber ASNumber = 64512

func (a ASNumber) String() string { return strconv.FormatUint(uint64(a), 10) }

// ParseASNumber reads "64512" or "1.10" (asdot).
func ParseASNumber(s string) (ASNumber, error) {
	s = strings.TrimSpace(s)
	if hi, lo, ok := strings.Cut(s, "."); ok {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("%q is not an AS number", s)
		}
		return ASNumber(h<<16 | l), nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an AS number", s)
	}
	return ASNumber(n), nil
}

func (a *ASNumber) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	n, err := ParseASNumber(s)
	if err != nil {
		return err
	}
	*a = n
	return nil
}

// Protocol is an IP protocol by name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite)
// or by number (1-255). Names are case-insensitive on input.
type Protocol string

// Protocol names, canonical spelling.
const (
	ProtocolTCP     Protocol = "TCP"
	ProtocolUDP     Protocol = "UDP"
	ProtocolICMP    Protocol = "ICMP"
	ProtocolICMPv6  Protocol = "ICMPv6"
	ProtocolSCTP    Protocol = "SCTP"
	ProtocolUDPLite Protocol = "UDPLite"
)

var protocolNumbers = map[string]uint8{
	"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136,
}

var protocolNames = map[string]Protocol{
	"tcp": ProtocolTCP, "udp": ProtocolUDP, "icmp": ProtocolICMP,
	"icmpv6": ProtocolICMPv6, "sctp": ProtocolSCTP, "udplite": ProtocolUDPLite,
}

// Number returns the IP protocol number, or false if p is not a protocol.
func (p Protocol) Number() (uint8, bool) {
	if n, ok := protocolNumbers[strings.ToLower(string(p))]; ok {
		return n, true
	}
	n, err := strconv.ParseUint(string(p), 10, 8)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint8(n), true
}

// Canonical returns the canonical spelling of a named protocol, or p itself.
func (p Protocol) Canonical() Protocol {
	if c, ok := protocolNames[strings.ToLower(string(p))]; ok {
		return c
	}
	return p
}

// SupportsPorts says whether rules may match ports for this protocol.
func (p Protocol) SupportsPorts() bool {
	n, ok := p.Number()
	return ok && (n == 6 || n == 17 || n == 132 || n == 136)
}

func (p *Protocol) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] != '"' {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("protocol %s is not a name or number", b)
		}
		*p = Protocol(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*p = Protocol(s).Canonical()
	return nil
}

func (p Protocol) MarshalJSON() ([]byte, error) {
	if n, err := strconv.ParseUint(string(p), 10, 8); err == nil {
		return []byte(strconv.FormatUint(n, 10)), nil
	}
	return json.Marshal(string(p))
}

// Port is a port number, a range "min:max", or a named port. A value that
// is none of these is kept in Invalid so validation can report it with its
// field path.
type Port struct {
	MinPort  uint16
	MaxPort  uint16
	PortName string
	Invalid  string
}

// SinglePort returns a Port matching exactly n.
func SinglePort(n uint16) Port { return Port{MinPort: n, MaxPort: n} }

// ParsePort reads "80", "8000:8080" or a port name.
func ParsePort(s string) (Port, error) {
	s = strings.TrimSpace(s)
	if lo, hi, ok := strings.Cut(s, ":"); ok {
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || a > b {
			return Port{}, fmt.Errorf("%q is not a port or range", s)
		}
		return Port{MinPort: uint16(a), MaxPort: uint16(b)}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return SinglePort(uint16(n)), nil
	}
	if isPortName(s) {
		return Port{PortName: s}, nil
	}
	return Port{}, fmt.Errorf("%q is not a port or range", s)
}

// isPortName accepts IANA-style service names: start with a letter, then
// letters, digits and single hyphens, at most 15 characters.
func isPortName(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	c := s[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return false
	}
	if strings.HasSuffix(s, "-") || strings.Contains(s, "--") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (p Port) String() string {
	switch {
	case p.Invalid != "":
		return p.Invalid
	case p.PortName != "":
		return p.PortName
	case p.MinPort == p.MaxPort:
		return strconv.Itoa(int(p.MinPort))
	default:
		return fmt.Sprintf("%d:%d", p.MinPort, p.MaxPort)
	}
}

func (p *Port) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] != '"' {
		n, err := strconv.ParseUint(string(b), 10, 16)
		if err != nil {
			*p = Port{Invalid: string(b)}
			return nil
		}
		*p = SinglePort(uint16(n))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	parsed, err := ParsePort(s)
	if err != nil {
		*p = Port{Invalid: s}
		return nil
	}
	*p = parsed
	return nil
}

func (p Port) MarshalJSON() ([]byte, error) {
	if p.Invalid == "" && p.PortName == "" && p.MinPort == p.MaxPort {
		return []byte(strconv.Itoa(int(p.MinPort))), nil
	}
	return json.Marshal(p.String())
}

// Duration is a time.Duration written as "15m", "90s", …
type Duration struct{ time.Duration }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s must be a string such as \"15m\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration", s)
	}
	d.Duration = v
	return nil
}
