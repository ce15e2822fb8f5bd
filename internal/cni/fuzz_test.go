package cni

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

var configSeeds = []string{
	`{"name":"calico","type":"tabby","etcd_endpoints":"http://localhost:2379","ipam":{"type":"tabby-ipam"}}`,
	`{"cniVersion":"0.1.0","name":"calico","type":"tabby","mtu":1500,"ipam":{"type":"tabby-ipam","assign_ipv4":"true","assign_ipv6":"false"}}`,
	`{"name":"dcos","type":"tabby","args":{"org.apache.mesos":{"network_info":{"name":"dcos","labels":{"labels":[{"key":"app","value":"/dev/web"}]},"port_mappings":[{"host_port":31000,"container_port":80,"protocol":"tcp"}],"groups":["g"],"ip_addresses":[{}]}}}}`,
	`{"cniVersion":"1.1.0","name":"n","type":"tabby","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"udp","hostIP":"::1"}],"ips":["10.0.0.1/24"],"mac":"0a:00:00:00:00:01"},"cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}]}`,
	`{"cniVersion":"0.4.0","name":"n","type":"bridge","ipam":{"type":"tabby-ipam","ipv4_pools":["10.0.0.0/8","pool-a"],"ipv6_pools":["fd00::/48"]},"dns":{"nameservers":["10.0.0.2"],"search":["a"]},"prevResult":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.5/32"}]}}`,
	`{"name":"n","type":"tabby","mtu":"1500"}`,
	`{"name":"n","type":"tabby","args":{"org.apache.mesos":{"network_info":{"port_mappings":[{"host_port":-1}]}}}}`,
	`{"name":"n","type":"tabby","capabilities":{"a":1}}`,
	`[]`, `null`, `"x"`, `{`, ``, `{"name":"\u00e9","type":"tabby"}`,
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		conf, err := ParseConfig(data)
		if err != nil {
			switch code := CodeOf(err, 0); code {
			case types.ErrIncompatibleCNIVersion, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig:
			default:
				t.Fatalf("ParseConfig error %v has code %d; want 1, 6 or 7", err, code)
			}
			if CodeOf(err, 0) == types.ErrInvalidNetworkConfig && !strings.Contains(err.Error(), "field ") && !strings.Contains(err.Error(), "request") {
				t.Fatalf("error %q does not name a field", err)
			}
			return
		}
		if err := conf.Validate(); err != nil {
			t.Fatalf("Validate after a successful ParseConfig: %v", err)
		}
		// What the plugin sends to the agent parses again.
		wire, err := json.Marshal(conf)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if _, err := ParseConfig(wire); err != nil {
			t.Fatalf("ParseConfig(Marshal(conf)) of %s: %v", wire, err)
		}
		req := &Request{ContainerID: "c", IfName: "eth0", NetConf: conf}
		id, err := IdentityFor(req)
		if err != nil {
			t.Fatalf("IdentityFor: %v", err)
		}
		for k, v := range id.Labels {
			if k == "" || len(v) > MaxLabelValueLen && len(v) > 0 {
				t.Fatalf("label %q=%q: empty key or value longer than %d", k, v, MaxLabelValueLen)
			}
		}
		_, _ = ModeFor("tabby", conf)
		_, _ = conf.ParsePrevResult()
	})
}

func FuzzParseCNIArgs(f *testing.F) {
	for _, s := range []string{"", "IgnoreUnknown=1;K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;K8S_POD_INFRA_CONTAINER_ID=c",
		"IP=10.0.0.1,fd00::1/64", "K8S_POD_NAME", "a=b=c;;", "IP=fe80::1%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseCNIArgs(s)
		if err != nil {
			if CodeOf(err, 0) != types.ErrInvalidEnvironmentVariables || !strings.Contains(err.Error(), "CNI_ARGS") {
				t.Fatalf("error %v: want code 4 naming CNI_ARGS", err)
			}
			return
		}
		back, err := ParseCNIArgs(a.String())
		if err != nil {
			t.Fatalf("ParseCNIArgs(String()) of %q: %v", a.String(), err)
		}
		if back.String() != a.String() || !slices.Equal(back.IPs, a.IPs) {
			t.Fatalf("round trip %q -> %q", a.String(), back.String())
		}
	})
}

// calicoSanitize is Calico's regexp implementation, the oracle for ours.
func calicoSanitize(s string) string {
	s = strings.ReplaceAll(s, "/", ".")
	s = regexp.MustCompile("[^-_.a-zA-Z0-9]+").ReplaceAllString(s, "-")
	s = regexp.MustCompile("[.-]*[.][.-]*").ReplaceAllString(s, ".")
	return regexp.MustCompile("^[.-]*(.*?)[.-]*$").FindStringSubmatch(s)[1]
}

func FuzzSanitizeMesosLabel(f *testing.F) {
	for _, s := range []string{"k", "-my-val", "$my..val", "m$y.val", "//my/val/", "some_val-with.lots*of^weird#characters",
		"café", "a\nb", "a-.-b", "\xff", "..--..", "a--b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := SanitizeMesosLabel(s)
		if want := calicoSanitize(s); got != want {
			t.Fatalf("SanitizeMesosLabel(%q) = %q; Calico's gives %q", s, got, want)
		}
		if again := SanitizeMesosLabel(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
		if v := MesosLabelValue(s); len(v) > MaxLabelValueLen {
			t.Fatalf("MesosLabelValue(%q) = %q is longer than %d", s, v, MaxLabelValueLen)
		}
	})
}
