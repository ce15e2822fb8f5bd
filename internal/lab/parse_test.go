package lab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeMesosApp(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"/app", "/app", ""},
		{"app", "/app", ""},
		{"/outergroup/subgroup/myapp", "/outergroup/subgroup/myapp", ""},
		{"/g/my-app.v2", "/g/my-app.v2", ""},
		{"", "", "empty"},
		{"/", "", "root group"},
		{"/g//app", "", `segment ""`},
		{"/g/../app", "", "relative"},
		{"/G/app", "", "lower-case"},
		{"/g/-app", "", "inner hyphens"},
		{"/g/app_1", "", "lower-case"},
		{"/g/a..b", "", "empty dot-separated part"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeMesosApp(tc.in)
			checkErr(t, err, tc.wantErr)
			if got != tc.want {
				t.Errorf("app: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMarathonNames(t *testing.T) {
	tests := []struct {
		app, name, id string
	}{
		{"/myapp", "myapp", "myapp.U"},
		{"/group/app", "app.group", "group_app.U"},
		{"/outergroup/subgroup/myapp", "myapp.subgroup.outergroup", "outergroup_subgroup_myapp.U"},
	}
	for _, tc := range tests {
		t.Run(tc.app, func(t *testing.T) {
			name, id := MarathonNames(tc.app, "U")
			if name != tc.name || id != tc.id {
				t.Errorf("names: got %q %q, want %q %q", name, id, tc.name, tc.id)
			}
		})
	}
}

func TestParseLabel(t *testing.T) {
	tests := []struct {
		in      string
		want    KeyValue
		wantErr string
	}{
		{"app=web", KeyValue{"app", "web"}, ""},
		{"empty=", KeyValue{"empty", ""}, ""},
		{"k=a=b", KeyValue{"k", "a=b"}, ""},
		{"projectcalico.org/namespace=dev", KeyValue{"projectcalico.org/namespace", "dev"}, ""},
		{"novalue", KeyValue{}, "want key=value"},
		{"=v", KeyValue{}, "empty key"},
		{"a b=c", KeyValue{}, "blanks"},
		{"a=b\nc", KeyValue{}, "newlines"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLabel(tc.in)
			checkErr(t, err, tc.wantErr)
			if got != tc.want {
				t.Errorf("label: got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseLabel(f *testing.F) {
	for _, s := range []string{"app=web", "=", "a=b=c", "k\x00=v", "ключ=значение"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kv, err := ParseLabel(s)
		if err != nil {
			return
		}
		again, err := ParseLabel(kv.Key + "=" + kv.Value)
		if err != nil || again != kv {
			t.Fatalf("round trip of %q: got %+v %v, want %+v", s, again, err, kv)
		}
	})
}

func TestRunSpecValidate(t *testing.T) {
	ok := RunSpec{Name: "web", Node: "h1", Command: []string{"sleep", "1"}}
	tests := []struct {
		name    string
		mod     func(*RunSpec)
		wantErr string
	}{
		{"ok", func(*RunSpec) {}, ""},
		{"mesos", func(s *RunSpec) { s.MesosApp = "/g/web"; s.Namespace = "dev"; s.Network = "calico" }, ""},
		{"no name", func(s *RunSpec) { s.Name = "" }, `name ""`},
		{"bad name", func(s *RunSpec) { s.Name = "Web_1" }, `name "Web_1"`},
		{"long name", func(s *RunSpec) { s.Name = strings.Repeat("a", 64) }, "at most 63"},
		{"no node", func(s *RunSpec) { s.Node = "" }, "node: required"},
		{"bad namespace", func(s *RunSpec) { s.Namespace = "Dev" }, `namespace "Dev"`},
		{"bad network", func(s *RunSpec) { s.Network = "-x" }, `network "-x"`},
		{"duplicate label", func(s *RunSpec) { s.Labels = []KeyValue{{"a", "1"}, {"a", "2"}} }, "given twice"},
		{"bad app", func(s *RunSpec) { s.MesosApp = "/A" }, `mesos app "/A"`},
		{"no command", func(s *RunSpec) { s.Command = nil }, "command: required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			checkErr(t, s.Validate(), tc.wantErr)
		})
	}
}

func TestMesosEnv(t *testing.T) {
	in := []string{
		"HOME=/root", "PATH=/home/me/bin", "SECRET=x",
		"CNI_COMMAND=ADD", "CNI_CONTAINERID=0f2c-uuid", "CNI_NETNS=/run/x/ns",
		"CNI_ARGS=", "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni",
	}
	want := []string{
		"CNI_COMMAND=ADD", "CNI_CONTAINERID=0f2c-uuid", "CNI_NETNS=/run/x/ns",
		"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni", "PATH=" + mesosPath,
	}
	if d := cmp.Diff(want, mesosEnv(in)); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
	// DEL after the namespace is gone: no CNI_NETNS at all.
	got := mesosEnv([]string{"CNI_COMMAND=DEL", "CNI_NETNS=", "CNI_ARGS=K8S_POD_NAME=x"})
	if d := cmp.Diff([]string{"CNI_COMMAND=DEL", "PATH=" + mesosPath}, got); d != "" {
		t.Errorf("DEL env (-want +got):\n%s", d)
	}
}

func TestInjectMesosArgs(t *testing.T) {
	ni := mesosNetworkInfo("calico", []KeyValue{{"app", "web"}})
	tests := []struct {
		name    string
		conf    string
		wantErr string
	}{
		{"plain", `{"cniVersion":"0.1.0","name":"calico","type":"tabby"}`, ""},
		{"other args kept", `{"cniVersion":"0.1.0","name":"calico","type":"tabby","args":{"cni":{"ips":["10.0.0.1"]}}}`, ""},
		{"mesos key in file", `{"name":"calico","type":"tabby","args":{"org.apache.mesos":{}}}`, "Mesos refuses"},
		{"args not an object", `{"name":"calico","type":"tabby","args":[1]}`, "not an object"},
		{"not json", `{"name":`, "network config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := injectMesosArgs([]byte(tc.conf), ni)
			checkErr(t, err, tc.wantErr)
			if err != nil {
				return
			}
			var got struct {
				CNIVersion string `json:"cniVersion"`
				Args       map[string]struct {
					NetworkInfo *struct {
						Name   string `json:"name"`
						Labels struct {
							Labels []KeyValue `json:"labels"`
						} `json:"labels"`
						IPAddresses []map[string]any `json:"ip_addresses"`
					} `json:"network_info"`
					IPs []string `json:"ips"`
				} `json:"args"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			m := got.Args[MesosArgsKey].NetworkInfo
			if m == nil || m.Name != "calico" || len(m.Labels.Labels) != 1 || m.Labels.Labels[0] != (KeyValue{"app", "web"}) || len(m.IPAddresses) != 1 {
				t.Errorf("network_info: got %+v, want name calico, label app=web, one empty ip_addresses entry", m)
			}
			if strings.Contains(tc.conf, `"cni"`) && len(got.Args["cni"].IPs) != 1 {
				t.Errorf("args.cni: got %+v, want it kept", got.Args["cni"])
			}
		})
	}
}

func FuzzInjectMesosArgs(f *testing.F) {
	for _, s := range []string{`{"name":"n","type":"t"}`, `{"args":null}`, `{"args":{"org.apache.mesos":1}}`, `[]`, `null`, `{"Args":{"0":0}}`, `{"args":{"":0}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, conf []byte) {
		out, err := injectMesosArgs(conf, mesosNetworkInfo("n", nil))
		if err != nil {
			return
		}
		// Keys are exact (Mesos's JSON is case-sensitive): look at "args" only.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("output is not a JSON object: %v", err)
		}
		var args map[string]json.RawMessage
		if err := json.Unmarshal(m["args"], &args); err != nil {
			t.Fatalf("output %s: args: %v", out, err)
		}
		var mesosArgs map[string]any
		if err := json.Unmarshal(args[MesosArgsKey], &mesosArgs); err != nil || mesosArgs["network_info"] == nil {
			t.Fatalf("output %s has no network_info", out)
		}
	})
}

func TestInjectCNILabels(t *testing.T) {
	list := `{"cniVersion":"1.1.0","name":"tabby","plugins":[{"type":"tabby","args":{"cni":{"ips":["10.0.0.9"]}}}]}`
	out, err := injectCNIArgs([]byte(list), []KeyValue{{"app", "web"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Plugins []struct {
			Args struct {
				CNI struct {
					IPs    []string   `json:"ips"`
					Labels []KeyValue `json:"labels"`
				} `json:"cni"`
			} `json:"args"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	c := got.Plugins[0].Args.CNI
	if d := cmp.Diff([]KeyValue{{"app", "web"}}, c.Labels); d != "" || len(c.IPs) != 1 {
		t.Errorf("args.cni: got %+v, want labels app=web and the ips kept", c)
	}
}

func TestFindMesosConf(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.conf":    `{"name":"other","type":"tabby"}`,
		"b.cni":     `{"name":"calico","type":"tabby","mtu":1400}`,
		"c.json":    `{"name":"calico","type":"tabby","mtu":1}`, // a duplicate: skipped
		"d":         `{"name":"notype"}`,
		"e.garbage": `not json`,
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, path, err := findMesosConf(dir, "calico")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "b.cni" || !strings.Contains(string(data), "1400") {
		t.Errorf("found %s (%s), want b.cni: the extension does not matter, the first file of a name wins", path, data)
	}
	if _, _, err := findMesosConf(dir, "notype"); err == nil {
		t.Errorf("network without a type: got found, want an error")
	}
}

func TestParseStat(t *testing.T) {
	stat := "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200 18446744073709551615"
	state, start, err := parseStat(stat)
	if err != nil || state != 'S' || start != 98765 {
		t.Errorf("parseStat: got %c %d %v, want S 98765", state, start, err)
	}
	for _, bad := range []string{"", "1 (x)", "1 (x) S 1 2 3"} {
		if _, _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q): got no error, want one", bad)
		}
	}
}

func FuzzParseProc(f *testing.F) {
	for _, s := range []string{"123 456\n", "1 0", "", "-1 2", "1 2 3", "99999999999999999999 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseProc(s)
		if err != nil {
			return
		}
		if p.PID <= 0 {
			t.Fatalf("parseProc(%q): PID %d accepted", s, p.PID)
		}
		if again, err := parseProc(p.String()); err != nil || again != p {
			t.Fatalf("round trip of %q: got %+v %v, want %+v", s, again, err, p)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add("1 (sleep) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0")
	f.Add("1 ()) Z")
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = parseStat(s) // must not panic
	})
}

func TestParseMountPoints(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
611 22 0:4 net:[4026532589] /run/netns/tlab-x-h1 rw shared:300 - nsfs nsfs rw
612 22 0:4 net:[4026532590] /run/tabby/lab/x/h1/mesos-cni/with\040space/ns rw - nsfs nsfs rw
short line`
	want := []string{"/", "/run/netns/tlab-x-h1", "/run/tabby/lab/x/h1/mesos-cni/with space/ns"}
	if d := cmp.Diff(want, parseMountPoints(info)); d != "" {
		t.Errorf("mount points (-want +got):\n%s", d)
	}
}

func FuzzParseMountPoints(f *testing.F) {
	f.Add(`1 2 0:1 / /a\040b rw - x y rw`)
	f.Add(`1 2 3 4 \`)
	f.Add(`1 2 3 4 \777\0`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, mp := range parseMountPoints(s) {
			if mp == "" {
				t.Fatalf("empty mount point from %q", s)
			}
		}
	})
}

func TestParseNSLink(t *testing.T) {
	if n, ok := parseNSLink("net:[4026531840]"); !ok || n != 4026531840 {
		t.Errorf("parseNSLink: got %d %v, want 4026531840 true", n, ok)
	}
	for _, bad := range []string{"mnt:[1]", "net:[x]", "net:[1", ""} {
		if _, ok := parseNSLink(bad); ok {
			t.Errorf("parseNSLink(%q): got ok, want not", bad)
		}
	}
}

func TestParseSmapsRollup(t *testing.T) {
	data := "00400000-7ffd [rollup]\nRss:               12345 kB\nPss:                6789 kB\nPss_Anon: 1 kB\n"
	rss, pss := parseSmapsRollup([]byte(data))
	if rss != 12345*1024 || pss != 6789*1024 {
		t.Errorf("rollup: got rss %d pss %d, want %d %d", rss, pss, 12345*1024, 6789*1024)
	}
}

func TestResolvConf(t *testing.T) {
	got := resolvConf(&DNS{Nameservers: []string{"10.101.1.2", "bad\nnameserver 1.1.1.1"}, Search: []string{"marathon.mesos", "mesos"}, Options: []string{"ndots:2"}})
	want := "# written by tabby lab\nnameserver 10.101.1.2\nsearch marathon.mesos mesos\noptions ndots:2\n"
	if got != want {
		t.Errorf("resolv.conf: got %q, want %q", got, want)
	}
	if got := resolvConf(nil); strings.Contains(got, "nameserver") {
		t.Errorf("no dns: got %q, want no nameserver", got)
	}
}
