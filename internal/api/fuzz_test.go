package api

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzDecode checks that Decode never panics, never returns resources with
// an error, and that whatever decodes re-encodes (as YAML and as JSON) to
// something that decodes to the same resources (secrets redacted) and
// still validates. Seeds: testdata/fuzz/FuzzDecode and the Calico samples.
func FuzzDecode(f *testing.F) {
	for _, s := range calicoSamples {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"apiVersion": "tabby.dev/v1", "kind": "List", "items": [{"apiVersion": "tabby.dev/v1", "kind": "Profile", "metadata": {"name": "a"}}]}`))
	f.Add([]byte("apiVersion: tabby.dev/v1\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: '[2001:db8::1]:179', asNumber: '1.10', password: {value: s3cret}}\n"))
	f.Add([]byte("apiVersion: tabby.dev/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Allow, protocol: '06', destination: {ports: [80, '1:2', http]}}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Decode(data)
		if err != nil {
			if rs != nil {
				t.Fatalf("Decode() returned %d resources and error %v", len(rs), err)
			}
			if err.Error() == "" {
				t.Fatalf("Decode() returned an empty error")
			}
			return
		}
		want := make([]Resource, len(rs))
		for i, r := range rs {
			want[i] = Redact(r)
		}
		for _, format := range []string{"yaml", "json"} {
			var b bytes.Buffer
			if err := Encode(&b, rs, format); err != nil {
				t.Fatalf("Encode(%s) error = %v", format, err)
			}
			again, err := DecodeNoValidate(b.Bytes())
			if err != nil {
				t.Fatalf("DecodeNoValidate(Encode(%s)) error = %v\n%s", format, err, b.String())
			}
			if diff := cmp.Diff(want, again, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("%s round trip mismatch (-want +got):\n%s\n%s", format, diff, b.String())
			}
			for _, r := range again {
				if hasRedactedSecret(r) {
					continue
				}
				if err := Validate(r); err != nil {
					t.Fatalf("Validate(decoded %s output) error = %v\n%s", format, err, b.String())
				}
			}
		}
	})
}

func hasRedactedSecret(r Resource) bool {
	switch r := r.(type) {
	case *BGPPeer:
		return r.Spec.Password != nil && r.Spec.Password.Value == RedactedValue
	case *BGPConfiguration:
		return r.Spec.NodeMeshPassword != nil && r.Spec.NodeMeshPassword.Value == RedactedValue
	}
	return false
}
