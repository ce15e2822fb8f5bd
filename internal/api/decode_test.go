package api

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeErrorText(t *testing.T) {
	in := `apiVersion: tabby.dev/v1
kind: IPPool
metadata:
  name: pool-1
spec:
  cidr: 10.48.0.0/16
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata:
  name: allow-web
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, "80-x"]
`
	_, err := Decode([]byte(in))
	want := `document 2: NetworkPolicy "allow-web": spec.ingress[0].destination.ports[1]: "80-x" is not a port or range`
	if err == nil || err.Error() != want {
		t.Fatalf("Decode() error = %v; want %s", err, want)
	}
	var de *DecodeError
	if !errors.As(err, &de) || de.Document != 2 || de.Item != -1 || de.Kind != "NetworkPolicy" || de.Name != "allow-web" {
		t.Errorf("DecodeError = %+v; want document 2, no item, NetworkPolicy allow-web", de)
	}
}

func TestDecodeErrors(t *testing.T) {
	pool := "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\n"
	tests := []struct {
		name string
		in   string
		want string // substring of the error
	}{
		{"unknown spec field", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, natOutgong: true}\n",
			`document 1: IPPool "p": spec.natOutgong: unknown field (did you mean "natOutgoing"?)`},
		{"wrong case field", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {CIDR: 10.0.0.0/16}\n",
			`spec.CIDR: unknown field (did you mean "cidr"?)`},
		{"unknown top-level field", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\nstatus: {}\n",
			`status: unknown field`},
		{"unknown metadata field", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p, lables: {a: b}}\nspec: {cidr: 10.0.0.0/16}\n",
			`metadata.lables: unknown field (did you mean "labels"?)`},
		{"unknown deep field", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {egress: [{action: Allow}, {action: Deny, destination: {net: [10.0.0.0/8]}}]}\n",
			`spec.egress[1].destination.net: unknown field (did you mean "nets"?)`},
		{"unknown field in second document", pool + "---\n" + "apiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: q}\nspec: {labelsToAply: {}}\n",
			`document 2: Profile "q": spec.labelsToAply: unknown field`},
		{"odd key", "apiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: q}\nspec: {'egress rules': []}\n",
			`spec["egress rules"]: unknown field`},
		{"number for string", "apiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: q, labels: {version: 1}}\nspec: {}\n",
			`metadata.labels["version"]: got the number 1; a string is required (quote the value)`},
		{"string for number", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: twenty}\n",
			`spec.blockSize: got the string "twenty"; a number is required`},
		{"fraction for integer", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: 26.5}\n",
			`spec.blockSize: 26.5 is not a plain integer`},
		{"negative for unsigned", "apiVersion: tabby.dev/v1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {listenPort: -1}\n",
			`spec.listenPort: -1 must not be negative`},
		{"port out of range", "apiVersion: tabby.dev/v1\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {node: a, interfaceName: eth0, ports: [{name: x, protocol: TCP, port: 65536}]}\n",
			`spec.ports[0].port: 65536 is out of range (0 to 65535)`},
		{"string for bool", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, natOutgoing: 'yes'}\n",
			`spec.natOutgoing: got the string "yes"; use true or false`},
		{"object for list", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: {a: b}}\n",
			`spec.nets: got an object; a list is required`},
		{"list for object", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: [a]\nspec: {}\n",
			`metadata: got a list; an object is required`},
		{"null in list", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [~]}\n",
			`spec.nets[0]: null is not allowed in a list`},
		{"null label value", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: s, labels: {a: }}\nspec: {}\n",
			`metadata.labels["a"]: null is not allowed here`},
		{"bad duration", "apiVersion: tabby.dev/v1\nkind: IPAMConfig\nmetadata: {name: default}\nspec: {leakGracePeriod: 15}\n",
			`spec.leakGracePeriod: duration 15 must be a string such as "15m"`},
		{"bad as number", "apiVersion: tabby.dev/v1\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 'AS65000'}\n",
			`spec.asNumber: "AS65000" is not an AS number`},
		{"bad protocol type", "apiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: true}]}\n",
			`spec.ingress[0].protocol: protocol true is not a name or number`},
		{"bad timestamp", "apiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: p, creationTimestamp: yesterday}\nspec: {}\n",
			`metadata.creationTimestamp:`},
		{"missing kind", "apiVersion: tabby.dev/v1\nmetadata: {name: p}\nspec: {}\n",
			`document 1: kind: is required`},
		{"unknown kind", "apiVersion: tabby.dev/v1\nkind: NetworkPolicyReport\nmetadata: {name: p}\nspec: {}\n",
			`document 1: kind: "NetworkPolicyReport" is not a known kind; use one of Node, IPPool,`},
		{"kind not string", "apiVersion: tabby.dev/v1\nkind: [IPPool]\nmetadata: {name: p}\n",
			`document 1: kind: got a list; a string is required`},
		{"missing apiVersion", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\n",
			`document 1: IPPool "p": apiVersion: is required; use tabby.dev/v1`},
		{"bad apiVersion", "apiVersion: projectcalico.org/v2\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\n",
			`apiVersion: "projectcalico.org/v2" is not supported; use tabby.dev/v1 (or projectcalico.org/v3)`},
		{"validation error", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: 40}\n",
			`document 1: IPPool "p": spec.blockSize: 40 is not allowed`},
		{"not a mapping", "- a\n- b\n", `document 1: line 1: got a list; a resource`},
		{"scalar document", pool + "---\njust text\n", `document 2: line 6: got the string "just text"; a resource`},
		{"yaml syntax error with absolute line", pool + "---\napiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: [\n", `document 2: invalid YAML: line 8`},
		{"yaml duplicate key", pool + "---\napiVersion: tabby.dev/v1\nkind: IPPool\nkind: Profile\n", `document 2: invalid YAML: line 8: key "kind" already set in map`},
		{"yaml tab indentation", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata:\n\tname: p\n", `document 1: invalid YAML: line 4`},
		{"json duplicate key", `{"apiVersion": "tabby.dev/v1", "kind": "IPPool", "kind": "Profile"}`, `document 1: line 1: key "kind" appears twice`},
		{"json syntax error", "{\"apiVersion\": \"tabby.dev/v1\",\n \"kind\": \"IPPool\",,}", `document 1: line 2: invalid character ','`},
		{"json truncated", `{"apiVersion": "tabby.dev/v1", "kind": "IPPool"`, `document 1: line 1: unexpected EOF`},
		{"json second object bad", `{"apiVersion": "tabby.dev/v1", "kind": "Profile", "metadata": {"name": "a"}} {"kind": 1}`, `document 2: kind: got the number 1`},
		{"list unknown field", "apiVersion: v1\nkind: List\nitem: []\n", `document 1: item: unknown field (a list has apiVersion, kind, metadata and items)`},
		{"list items not list", "apiVersion: v1\nkind: List\nitems: {a: b}\n", `document 1: items: got an object; a list is required`},
		{"list item error", "apiVersion: v1\nkind: List\nitems:\n- " + strings.TrimSpace(strings.ReplaceAll(pool, "\n", "\n  ")) + "\n- apiVersion: tabby.dev/v1\n  kind: Profile\n  metadata: {name: Bad}\n",
			`document 1: items[1]: Profile "Bad": metadata.name: "Bad" is not a valid name`},
		{"typed list wrong kind", "apiVersion: tabby.dev/v1\nkind: ProfileList\nitems:\n- " + strings.TrimSpace(strings.ReplaceAll(pool, "\n", "\n  ")) + "\n",
			`document 1: items[0]: IPPool "p": kind: IPPool is not allowed in a ProfileList`},
		{"nested list", "kind: List\nitems:\n- kind: List\n  items: []\n", `document 1: items[0].kind: a list cannot contain a list`},
		{"list bad apiVersion", "apiVersion: v2\nkind: List\nitems: []\n", `document 1: apiVersion: "v2" is not supported for a list`},
		{"list item without apiVersion", "apiVersion: v1\nkind: List\nitems:\n- kind: Profile\n  metadata: {name: a}\n", `document 1: items[0]: Profile "a": apiVersion: is required`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Decode([]byte(tc.in))
			if err == nil {
				t.Fatalf("Decode() = %d resources, no error; want error containing %q", len(rs), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode() error = %q; want it to contain %q", err, tc.want)
			}
			if rs != nil {
				t.Errorf("Decode() returned %d resources with an error; want none", len(rs))
			}
		})
	}
}

func TestDecodeForms(t *testing.T) {
	profile := func(name string) *Profile {
		return &Profile{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "Profile"}, ObjectMeta: ObjectMeta{Name: name}}
	}
	pool := &IPPool{
		TypeMeta:   TypeMeta{APIVersion: APIVersion, Kind: "IPPool"},
		ObjectMeta: ObjectMeta{Name: "p"},
		Spec: IPPoolSpec{CIDR: "10.0.0.0/16", BlockSize: 26, IPIPMode: "Never", VXLANMode: "Never",
			NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}},
	}
	tests := []struct {
		name string
		in   string
		want []Resource
	}{
		{"empty input", "", nil},
		{"only comments and separators", "# nothing\n---\n# still nothing\n---\n...\n", nil},
		{"single yaml", "apiVersion: tabby.dev/v1\nkind: Profile\nmetadata:\n  name: a\n", []Resource{profile("a")}},
		{"multi-doc with empty documents", "---\napiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: a}\n---\n---   # a comment\napiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: b}\n...\n",
			[]Resource{profile("a"), profile("b")}},
		{"crlf line ends", "apiVersion: tabby.dev/v1\r\nkind: Profile\r\nmetadata: {name: a}\r\n---\r\napiVersion: tabby.dev/v1\r\nkind: Profile\r\nmetadata: {name: b}\r\n",
			[]Resource{profile("a"), profile("b")}},
		{"byte order mark", "\xef\xbb\xbfapiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: a}\n", []Resource{profile("a")}},
		{"kind case-insensitive and plural", "apiVersion: tabby.dev/v1\nkind: PROFILE\nmetadata: {name: a}\n---\napiVersion: tabby.dev/v1\nkind: profiles\nmetadata: {name: b}\n",
			[]Resource{profile("a"), profile("b")}},
		{"calico api version", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\n", []Resource{pool}},
		{"json object", `{"apiVersion": "tabby.dev/v1", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0\/16"}}`, []Resource{pool}},
		{"json stream", `{"apiVersion": "tabby.dev/v1", "kind": "Profile", "metadata": {"name": "a"}}
{"apiVersion": "tabby.dev/v1", "kind": "Profile", "metadata": {"name": "b"}}`, []Resource{profile("a"), profile("b")}},
		{"json list", `{"apiVersion": "tabby.dev/v1", "kind": "List", "items": [
  {"apiVersion": "tabby.dev/v1", "kind": "Profile", "metadata": {"name": "a"}},
  {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/16"}}]}`,
			[]Resource{profile("a"), pool}},
		{"yaml list", "apiVersion: v1\nkind: List\nmetadata: {}\nitems:\n- apiVersion: tabby.dev/v1\n  kind: Profile\n  metadata: {name: a}\n- apiVersion: tabby.dev/v1\n  kind: Profile\n  metadata: {name: b}\n",
			[]Resource{profile("a"), profile("b")}},
		{"typed list items inherit kind and apiVersion", "apiVersion: projectcalico.org/v3\nkind: ProfileList\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\n",
			[]Resource{profile("a"), profile("b")}},
		{"empty list", "apiVersion: tabby.dev/v1\nkind: IPPoolList\nitems: []\n", nil},
		{"list among documents", "apiVersion: tabby.dev/v1\nkind: ProfileList\nitems:\n- metadata: {name: a}\n---\napiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: b}\n",
			[]Resource{profile("a"), profile("b")}},
		{"yaml flow mapping", "{apiVersion: tabby.dev/v1, kind: Profile, metadata: {name: a}}\n---\n{apiVersion: tabby.dev/v1, kind: Profile, metadata: {name: b}}\n",
			[]Resource{profile("a"), profile("b")}},
		{"document on the separator line", "--- {apiVersion: tabby.dev/v1, kind: Profile, metadata: {name: a}}\n", []Resource{profile("a")}},
		{"null fields are unset", "apiVersion: tabby.dev/v1\nkind: Profile\nmetadata: {name: a, labels: ~}\nspec: ~\n", []Resource{profile("a")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decode() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeNoValidate(t *testing.T) {
	in := "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: Bad}\nspec: {cidr: 10.0.0.1/16}\n"
	rs, err := DecodeNoValidate([]byte(in))
	if err != nil {
		t.Fatalf("DecodeNoValidate() error = %v; want none", err)
	}
	p := rs[0].(*IPPool)
	if p.Spec.BlockSize != 0 || p.Spec.CIDR != "10.0.0.1/16" {
		t.Errorf("DecodeNoValidate() spec = %+v; want it as written, without defaults", p.Spec)
	}
	if _, err := DecodeNoValidate([]byte(strings.Replace(in, "cidr:", "cider:", 1))); err == nil {
		t.Errorf("DecodeNoValidate() accepted an unknown field; want an error")
	}
	if _, err := Decode([]byte(in)); err == nil {
		t.Errorf("Decode() accepted an invalid pool; want an error")
	}
}

func TestEncode(t *testing.T) {
	peer := &BGPPeer{ObjectMeta: ObjectMeta{Name: "tor"}, Spec: BGPPeerSpec{PeerIP: "192.0.2.1", ASNumber: 65001, Password: &BGPPassword{Value: "s3cret"}}}
	prof := &Profile{ObjectMeta: ObjectMeta{Name: "net-1"}, Spec: ProfileSpec{LabelsToApply: map[string]string{"net-1": ""}}}
	prof2 := &Profile{ObjectMeta: ObjectMeta{Name: "net-2"}}
	tests := []struct {
		name   string
		rs     []Resource
		format string
		want   string
	}{
		{"one yaml", []Resource{prof}, "yaml", `apiVersion: tabby.dev/v1
kind: Profile
metadata:
  name: net-1
spec:
  labelsToApply:
    net-1: ""
`},
		{"one json", []Resource{prof2}, "json", `{
  "apiVersion": "tabby.dev/v1",
  "kind": "Profile",
  "metadata": {
    "name": "net-2"
  },
  "spec": {}
}
`},
		{"typed list yaml", []Resource{prof, prof2}, "YAML", `apiVersion: tabby.dev/v1
items:
- apiVersion: tabby.dev/v1
  kind: Profile
  metadata:
    name: net-1
  spec:
    labelsToApply:
      net-1: ""
- apiVersion: tabby.dev/v1
  kind: Profile
  metadata:
    name: net-2
  spec: {}
kind: ProfileList
`},
		{"mixed list json, redacted", []Resource{prof2, peer}, "json", `{
  "apiVersion": "tabby.dev/v1",
  "kind": "List",
  "items": [
    {
      "apiVersion": "tabby.dev/v1",
      "kind": "Profile",
      "metadata": {
        "name": "net-2"
      },
      "spec": {}
    },
    {
      "apiVersion": "tabby.dev/v1",
      "kind": "BGPPeer",
      "metadata": {
        "name": "tor"
      },
      "spec": {
        "peerIP": "192.0.2.1",
        "asNumber": 65001,
        "password": {
          "value": "<redacted>"
        }
      }
    }
  ]
}
`},
		{"empty list", nil, "yaml", "apiVersion: tabby.dev/v1\nitems: []\nkind: List\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Encode(&b, tc.rs, tc.format); err != nil {
				t.Fatalf("Encode() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, b.String()); diff != "" {
				t.Errorf("Encode() mismatch (-want +got):\n%s", diff)
			}
			if _, err := DecodeNoValidate(b.Bytes()); err != nil {
				t.Errorf("DecodeNoValidate(Encode()) error = %v", err)
			}
		})
	}
	if peer.Spec.Password.Value != "s3cret" {
		t.Errorf("Encode() changed its input: password = %q", peer.Spec.Password.Value)
	}
	var nilPool *IPPool
	if err := Encode(&bytes.Buffer{}, []Resource{prof, nilPool}, "yaml"); err == nil || !strings.Contains(err.Error(), "item 1 is nil") {
		t.Errorf("Encode(nil item) error = %v; want item 1 is nil", err)
	}
	if err := Encode(&bytes.Buffer{}, []Resource{prof}, "xml"); err == nil || !strings.Contains(err.Error(), `"xml" is not supported`) {
		t.Errorf("Encode(xml) error = %v; want format not supported", err)
	}
}

func TestEncodeNeverCarriesSecrets(t *testing.T) {
	rs := []Resource{
		&BGPPeer{ObjectMeta: ObjectMeta{Name: "a"}, Spec: BGPPeerSpec{PeerIP: "192.0.2.1", ASNumber: 1, Password: &BGPPassword{Value: "peer-secret"}}},
		&BGPConfiguration{ObjectMeta: ObjectMeta{Name: "default"}, Spec: BGPConfigurationSpec{NodeMeshPassword: &BGPPassword{Value: "mesh-secret"}}},
	}
	for _, format := range []string{"yaml", "json"} {
		for _, set := range [][]Resource{rs, rs[:1], rs[1:]} {
			var b bytes.Buffer
			if err := Encode(&b, set, format); err != nil {
				t.Fatalf("Encode(%s) error = %v", format, err)
			}
			if strings.Contains(b.String(), "secret") {
				t.Errorf("Encode(%s) output carries a secret:\n%s", format, b.String())
			}
		}
	}
}

func TestRedact(t *testing.T) {
	peer := &BGPPeer{ObjectMeta: ObjectMeta{Name: "a"}, Spec: BGPPeerSpec{Password: &BGPPassword{Value: "x"}}}
	got := Redact(peer).(*BGPPeer)
	if got.Spec.Password.Value != RedactedValue || peer.Spec.Password.Value != "x" {
		t.Errorf("Redact() = %q, original %q; want %q and the original untouched", got.Spec.Password.Value, peer.Spec.Password.Value, RedactedValue)
	}
	ref := &BGPPeer{Spec: BGPPeerSpec{Password: &BGPPassword{SecretKeyRef: &SecretKeyRef{Name: "s", Key: "k"}}}}
	if diff := cmp.Diff(Resource(ref), Redact(ref)); diff != "" {
		t.Errorf("Redact() changed a secret reference (-want +got):\n%s", diff)
	}
}
