package cni

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseCNIArgs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want CNIArgs
	}{
		{name: "none (Mesos)", in: "", want: CNIArgs{}},
		{
			name: "kubernetes",
			in:   "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1",
			want: CNIArgs{IgnoreUnknown: true, K8sPodNamespace: "prod", K8sPodName: "web-0", K8sPodInfraContainerID: "abc123", K8sPodUID: "u-1"},
		},
		{name: "unknown keys ignored without IgnoreUnknown", in: "FOO=bar;K8S_POD_NAME=p", want: CNIArgs{K8sPodName: "p"}},
		{name: "empty segments", in: ";;K8S_POD_NAME=p;", want: CNIArgs{K8sPodName: "p"}},
		{name: "IgnoreUnknown true", in: "IgnoreUnknown=true", want: CNIArgs{IgnoreUnknown: true}},
		{name: "IgnoreUnknown 0", in: "IgnoreUnknown=0", want: CNIArgs{}},
		{name: "value with =", in: "K8S_POD_NAME=a=b", want: CNIArgs{K8sPodName: "a=b"}},
		{
			name: "IP list",
			in:   "IP=10.0.0.5,fd00::5/64",
			want: CNIArgs{IPs: []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCNIArgs(tc.in)
			if err != nil {
				t.Fatalf("ParseCNIArgs(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("ParseCNIArgs(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
	if a, _ := ParseCNIArgs("K8S_POD_NAMESPACE=a;K8S_POD_NAME=b"); !a.IsK8s() {
		t.Errorf("IsK8s() = false with both pod args; want true")
	}
	if a, _ := ParseCNIArgs("K8S_POD_NAME=b"); a.IsK8s() {
		t.Errorf("IsK8s() = true without a namespace; want false")
	}
}

func TestParseCNIArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "no equals", in: "K8S_POD_NAME", want: `"K8S_POD_NAME"`},
		{name: "bad IP", in: "IP=10.0.0.300", want: `"10.0.0.300"`},
		{name: "bad IP in list", in: "IP=10.0.0.1,,", want: `""`},
		{name: "bad IgnoreUnknown", in: "IgnoreUnknown=maybe", want: `"maybe"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCNIArgs(tc.in)
			if err == nil {
				t.Fatalf("ParseCNIArgs(%q) succeeded; want an error", tc.in)
			}
			if CodeOf(err, 0) != types.ErrInvalidEnvironmentVariables || !strings.Contains(err.Error(), "CNI_ARGS") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v (code %d); want code 4 naming CNI_ARGS and %s", err, CodeOf(err, 0), tc.want)
			}
		})
	}
}

func TestCNIArgsString(t *testing.T) {
	in := "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=u;IP=10.0.0.1,fd00::1"
	a, err := ParseCNIArgs(in)
	if err != nil {
		t.Fatalf("ParseCNIArgs: %v", err)
	}
	if got := a.String(); got != in {
		t.Errorf("String() = %q; want %q", got, in)
	}
}
