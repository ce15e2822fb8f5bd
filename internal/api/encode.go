package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"

	"sigs.k8s.io/yaml"
)

// resourceList is the List document Encode writes for several resources
// (as calicoctl get does).
type resourceList struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Items      []Resource `json:"items"`
}

// Encode writes resources as "yaml" or "json". One resource is written as
// itself; none or several as a List ("<Kind>List" when all are of one kind,
// else "List"), as calicoctl does. Secrets are always redacted (see
// Redact), and every resource carries apiVersion tabby.dev/v1 and its
// canonical kind. The output decodes back with Decode.
func Encode(w io.Writer, rs []Resource, format string) error {
	items := make([]Resource, len(rs))
	for i, r := range rs {
		if r == nil || reflect.ValueOf(r).IsNil() {
			return fmt.Errorf("encode resources: item %d is nil", i)
		}
		c := Redact(r)
		tm := c.GetTypeMeta()
		tm.APIVersion, tm.Kind = APIVersion, c.KindInfo().Kind
		items[i] = c
	}
	var doc any
	if len(items) == 1 {
		doc = items[0]
	} else {
		doc = resourceList{APIVersion: APIVersion, Kind: listKindOf(items), Items: items}
	}
	var out []byte
	var err error
	switch strings.ToLower(format) {
	case "json":
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		err = enc.Encode(doc)
		out = b.Bytes()
	case "yaml", "yml":
		if len(items) <= 1 {
			out, err = yaml.Marshal(doc)
			break
		}
		// A list is written item by item: converting one document holding
		// thousands of items costs far more time and memory.
		return encodeYAMLList(w, listKindOf(items), items)
	default:
		return fmt.Errorf("output format %s is not supported; use yaml or json", quote(format))
	}
	if err != nil {
		return fmt.Errorf("encode resources: %w", err)
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("write resources: %w", err)
	}
	return nil
}

// encodeYAMLList writes the same document yaml.Marshal(resourceList{…})
// would, one item at a time.
func encodeYAMLList(w io.Writer, kind string, items []Resource) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "apiVersion: %s\nitems:\n", APIVersion)
	for _, it := range items {
		b, err := yaml.Marshal(it)
		if err != nil {
			return fmt.Errorf("encode resources: %w", err)
		}
		lines := strings.SplitAfter(strings.TrimRight(string(b), "\n"), "\n")
		for i, l := range lines {
			if i == 0 {
				bw.WriteString("- ")
			} else {
				bw.WriteString("  ")
			}
			bw.WriteString(l)
		}
		bw.WriteString("\n")
	}
	fmt.Fprintf(bw, "kind: %s\n", kind)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write resources: %w", err)
	}
	return nil
}

func listKindOf(rs []Resource) string {
	if len(rs) == 0 {
		return "List"
	}
	k := rs[0].KindInfo().Kind
	for _, r := range rs[1:] {
		if r.KindInfo().Kind != k {
			return "List"
		}
	}
	return k + "List"
}

// Redact returns r with every secret (BGP password values) replaced by
// RedactedValue: a deep copy for the kinds that carry secrets (r itself is
// not changed), r itself for the others.
func Redact(r Resource) Resource {
	switch r.(type) {
	case *BGPConfiguration, *BGPPeer:
	default:
		return r // no secrets in other kinds
	}
	c := DeepCopy(r)
	redact := func(pw *BGPPassword) {
		if pw != nil && pw.Value != "" {
			pw.Value = RedactedValue
		}
	}
	switch c := c.(type) {
	case *BGPPeer:
		redact(c.Spec.Password)
	case *BGPConfiguration:
		redact(c.Spec.NodeMeshPassword)
	}
	return c
}
