package cni

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"
)

// SupportedVersions are the CNI versions tabby-cni speaks, oldest first.
var SupportedVersions = []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// VersionInfo is the plugin's answer to VERSION.
var VersionInfo = version.PluginSupports(SupportedVersions...)

// WireVersion is the result version on the agent socket.
const WireVersion = "1.1.0"

// ResultVersion is the result version printed for a config's cniVersion:
// the same version, or 0.2.0 when the config has none (as Calico, and what
// Mesos expects).
func ResultVersion(confVersion string) string {
	if confVersion == "" {
		return "0.2.0"
	}
	return confVersion
}

// FormatResult renders r in the result format of confVersion: types100 for
// 1.x, types040 for 0.3.x/0.4.0, and the 0.1/0.2 shape (ip4.ip CIDR,
// gateway, routes, dns; never ips[]) for 0.1.0, 0.2.0 and an absent
// version. r is not modified.
func FormatResult(r *types100.Result, confVersion string) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("no result to format")
	}
	c := *r
	c.CNIVersion = WireVersion
	want := ResultVersion(confVersion)
	converted, err := c.GetAsVersion(want)
	if err != nil {
		return nil, fmt.Errorf("convert result to CNI %s: %w", want, err)
	}
	var buf bytes.Buffer
	if err := converted.PrintTo(&buf); err != nil {
		return nil, fmt.Errorf("encode CNI %s result: %w", want, err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// ParseResult reads a result of any supported version (its cniVersion,
// or confVersion when it has none) and converts it to types100.
func ParseResult(raw []byte, confVersion string) (*types100.Result, error) {
	var peek struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(raw, &peek); err != nil {
		return nil, fmt.Errorf("decode CNI result: %w", err)
	}
	v := peek.CNIVersion
	if v == "" {
		v = ResultVersion(confVersion)
	}
	res, err := create.Create(v, raw)
	if err != nil {
		return nil, fmt.Errorf("decode CNI %s result: %w", v, err)
	}
	r100, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert CNI %s result to %s: %w", v, WireVersion, err)
	}
	return r100, nil
}

// ParsePrevResult returns the config's prevResult as a types100 result, or
// nil when there is none. A bad prevResult is an error with code 7.
func (c *NetConf) ParsePrevResult() (*types100.Result, error) {
	if len(c.PrevResult) == 0 || string(c.PrevResult) == "null" {
		return nil, nil
	}
	r, err := ParseResult(c.PrevResult, c.CNIVersion)
	if err != nil {
		return nil, Errorf(types.ErrInvalidNetworkConfig, "invalid network config: field \"prevResult\": %w", err)
	}
	return r, nil
}
