package cni

import (
	"bytes"
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

func mustCIDR(s string) net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return *n
}

// sampleResult is what the agent answers for a dual-stack attach.
func sampleResult() *types100.Result {
	gw := net.ParseIP("169.254.1.1")
	return &types100.Result{
		CNIVersion: WireVersion,
		Interfaces: []*types100.Interface{
			{Name: "tby1a2b3c4d5e6", Mac: "ee:ee:ee:ee:ee:ee"},
			{Name: "eth0", Mac: "0a:58:0a:41:00:05", Sandbox: "/var/run/mesos/isolators/network/cni/" + mesosUUID + "/ns"},
		},
		IPs: []*types100.IPConfig{
			{Interface: types100.Int(1), Address: mustCIDR("10.65.0.5/32"), Gateway: gw},
			{Interface: types100.Int(1), Address: mustCIDR("fd65::5/128")},
		},
		Routes: []*types.Route{
			{Dst: mustCIDR("0.0.0.0/0"), GW: gw},
			{Dst: mustCIDR("::/0")},
		},
		DNS: types.DNS{Nameservers: []string{"198.51.100.53"}, Domain: "mesos", Search: []string{"marathon.mesos"}},
	}
}

func TestFormatResultEveryVersion(t *testing.T) {
	for _, v := range append([]string{""}, SupportedVersions...) {
		name := v
		if name == "" {
			name = "absent"
		}
		t.Run(name, func(t *testing.T) {
			r := sampleResult()
			out, err := FormatResult(r, v)
			if err != nil {
				t.Fatalf("FormatResult: %v", err)
			}
			golden(t, "results/"+name+".json", out)

			var shape map[string]any
			if err := json.Unmarshal(out, &shape); err != nil {
				t.Fatalf("result is not JSON: %v", err)
			}
			if got, want := shape["cniVersion"], ResultVersion(v); got != want {
				t.Errorf("cniVersion = %v; want %v", got, want)
			}
			old := v == "" || v == "0.1.0" || v == "0.2.0"
			_, hasIPs := shape["ips"]
			_, hasIP4 := shape["ip4"]
			if old && (hasIPs || !hasIP4) {
				t.Errorf("CNI %q result %s: want ip4 and never ips[]", v, out)
			}
			if !old && (!hasIPs || hasIP4) {
				t.Errorf("CNI %q result %s: want ips[] and no ip4", v, out)
			}
			// The result reads back with the first address of each family.
			back, err := ParseResult(out, v)
			if err != nil {
				t.Fatalf("ParseResult: %v", err)
			}
			if len(back.IPs) != 2 || back.IPs[0].Address.String() != "10.65.0.5/32" || back.IPs[1].Address.String() != "fd65::5/128" {
				t.Errorf("ParseResult(FormatResult) IPs = %v; want 10.65.0.5/32, fd65::5/128", back.IPs)
			}
			if diff := cmp.Diff(sampleResult(), r); diff != "" {
				t.Errorf("FormatResult modified its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestFormatResultErrors(t *testing.T) {
	if _, err := FormatResult(nil, "1.1.0"); err == nil {
		t.Error("FormatResult(nil) succeeded; want an error")
	}
	empty := &types100.Result{CNIVersion: WireVersion}
	if _, err := FormatResult(empty, "0.2.0"); err == nil || !strings.Contains(err.Error(), "0.2.0") {
		t.Errorf("FormatResult(no IPs, 0.2.0) error = %v; want one naming 0.2.0", err)
	}
	if _, err := FormatResult(sampleResult(), "9.9.9"); err == nil {
		t.Error("FormatResult(9.9.9) succeeded; want an error")
	}
}

func TestParseResultWithoutVersion(t *testing.T) {
	// A 0.2.0 prevResult as old runtimes cache it: no cniVersion.
	r, err := ParseResult([]byte(`{"ip4":{"ip":"10.65.0.5/32","gateway":"169.254.1.1"}}`), "")
	if err != nil {
		t.Fatalf("ParseResult: %v", err)
	}
	if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.65.0.5/32" {
		t.Errorf("IPs = %v; want 10.65.0.5/32", r.IPs)
	}
	c := &NetConf{CNIVersion: "0.3.1", PrevResult: json.RawMessage(`{"ips":"x"}`)}
	if _, err := c.ParsePrevResult(); CodeOf(err, 0) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "prevResult") {
		t.Errorf("ParsePrevResult(bad) error = %v; want code 7 naming prevResult", err)
	}
	if r, err := (&NetConf{}).ParsePrevResult(); r != nil || err != nil {
		t.Errorf("ParsePrevResult(none) = %v, %v; want nil, nil", r, err)
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		name, version string
		err           *types.Error
	}{
		{name: "absent", version: "", err: types.NewError(types.ErrTryAgainLater, "tabby agent is not reachable", "")},
		{name: "1.1.0", version: "1.1.0", err: types.NewError(types.ErrInvalidNetworkConfig, `invalid network config: field "mtu": 70000 is out of range 68-65535`, "some details")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteError(&buf, tc.version, tc.err); err != nil {
				t.Fatalf("WriteError: %v", err)
			}
			golden(t, "errors/"+tc.name+".json", buf.Bytes())
		})
	}
}

func TestResultVersion(t *testing.T) {
	for in, want := range map[string]string{"": "0.2.0", "0.1.0": "0.1.0", "0.2.0": "0.2.0", "1.1.0": "1.1.0"} {
		if got := ResultVersion(in); got != want {
			t.Errorf("ResultVersion(%q) = %q; want %q", in, got, want)
		}
	}
}
