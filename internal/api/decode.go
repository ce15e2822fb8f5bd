package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Decode reads resources from a manifest: YAML with one or more documents
// separated by "---" lines, or JSON (one object, or several in a row). A
// document may also be a List ("kind: List" or "kind: <Kind>List") whose
// items are resources. Empty documents are skipped.
//
// Every document needs apiVersion tabby.dev/v1 (projectcalico.org/v3 is
// accepted for the kinds shared with Calico) and a kind, matched
// case-insensitively. Decoding is strict: an unknown or misspelt field, a
// duplicate key or a value of the wrong type is an error naming the field.
// Decode then applies SetDefaults and Validate to each resource.
//
// It stops at the first document in error and returns no resources; the
// error is a *DecodeError naming the document (1-based, counting non-empty
// documents), the kind and name when known, and the field problems:
//
//	document 2: NetworkPolicy "allow-web": spec.ingress[0].destination.ports[1]: "80-x" is not a port or range
//
// Decoded resources carry the canonical kind and apiVersion tabby.dev/v1.
func Decode(data []byte) ([]Resource, error) { return decode(data, true) }

// DecodeNoValidate is Decode without SetDefaults and Validate: decoding is
// still strict (unknown fields and wrong types are errors).
func DecodeNoValidate(data []byte) ([]Resource, error) { return decode(data, false) }

// maxDepth bounds the nesting of JSON input.
const maxDepth = 1000

// document is one parsed, not yet typed, document of the input.
type document struct {
	value any // generic JSON value; numbers are json.Number
	line  int // line of the input the document starts on
}

func decode(data []byte, validate bool) ([]Resource, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []document
	var err error
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		docs, err = splitJSON(data)
		if err != nil {
			// "{" also starts a YAML flow mapping ({kind: IPPool, ...}).
			if ydocs, yerr := splitYAML(data); yerr == nil {
				docs, err = ydocs, nil
			}
		}
	} else {
		docs, err = splitYAML(data)
	}
	if err != nil {
		return nil, err
	}
	var out []Resource
	for i, d := range docs {
		rs, err := decodeDocument(d, i+1, validate)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// ---- JSON ----

// splitJSON reads a stream of JSON values, each one document.
func splitJSON(data []byte) ([]document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var docs []document
	for {
		start := dec.InputOffset()
		v, err := readJSON(dec, 0)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, &DecodeError{Document: len(docs) + 1, Item: -1,
				Err: fmt.Errorf("line %d: %s", lineOf(data, dec.InputOffset()), strings.TrimPrefix(err.Error(), "json: "))}
		}
		docs = append(docs, document{value: v, line: lineOf(data, start)})
	}
}

// readJSON reads one JSON value token by token, rejecting duplicate keys.
func readJSON(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nesting is deeper than %d levels", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, unexpectedEOF(err, depth > 0)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		m := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, unexpectedEOF(err, true)
			}
			k, _ := kt.(string)
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("key %s appears twice in an object", quote(k))
			}
			v, err := readJSON(dec, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		_, err = dec.Token()
		return m, unexpectedEOF(err, true)
	case '[':
		l := []any{}
		for dec.More() {
			v, err := readJSON(dec, depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		_, err = dec.Token()
		return l, unexpectedEOF(err, true)
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// unexpectedEOF turns io.EOF inside a value into io.ErrUnexpectedEOF.
func unexpectedEOF(err error, inside bool) error {
	if inside && err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// ---- YAML ----

// splitYAML cuts the input at document separators ("---" lines; "..."
// ends a document) and converts each non-empty document to a generic JSON
// value.
func splitYAML(data []byte) ([]document, error) {
	var docs []document
	var buf bytes.Buffer
	start := 1
	flush := func() error {
		text := buf.Bytes()
		buf.Reset()
		if len(bytes.TrimSpace(text)) == 0 {
			return nil // empty document
		}
		j, err := yaml.YAMLToJSONStrict(text)
		if err != nil {
			return &DecodeError{Document: len(docs) + 1, Item: -1, Err: yamlError(err, start)}
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return &DecodeError{Document: len(docs) + 1, Item: -1, Err: fmt.Errorf("line %d: %w", start, err)}
		}
		if v != nil { // null: a document of comments only
			docs = append(docs, document{value: v, line: start})
		}
		return nil
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, l := range lines {
		trimmed := bytes.TrimRight(l, "\r\n")
		sep, rest := isDocumentSeparator(trimmed)
		if !sep {
			buf.Write(l)
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		start = i + 2
		if len(rest) > 0 {
			// "--- value": the document starts on the separator's line.
			buf.Write(rest)
			buf.WriteByte('\n')
			start = i + 1
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

// isDocumentSeparator recognises "---" (optionally followed by content or a
// comment) and "..." lines.
func isDocumentSeparator(line []byte) (bool, []byte) {
	for _, marker := range []string{"---", "..."} {
		if !bytes.HasPrefix(line, []byte(marker)) {
			continue
		}
		rest := line[3:]
		if len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' {
			continue
		}
		rest = bytes.TrimSpace(rest)
		if marker == "..." || bytes.HasPrefix(rest, []byte("#")) {
			rest = nil
		}
		return true, rest
	}
	return false, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError makes a YAML parser error one line, with line numbers counted
// from the start of the input.
func yamlError(err error, start int) error {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:")
	msg = strings.Join(strings.Fields(msg), " ")
	msg = yamlLine.ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "line "))
		return "line " + strconv.Itoa(n+start-1)
	})
	if !strings.HasPrefix(msg, "line ") {
		msg = fmt.Sprintf("line %d: %s", start, msg)
	}
	return errors.New("invalid YAML: " + msg)
}

// ---- documents ----

func decodeDocument(d document, docNo int, validate bool) ([]Resource, error) {
	obj, ok := d.value.(map[string]any)
	if !ok {
		return nil, &DecodeError{Document: docNo, Item: -1,
			Err: fmt.Errorf("line %d: got %s; a resource (an object with apiVersion, kind, metadata and spec) is required", d.line, describe(d.value))}
	}
	if kind, ok := obj["kind"].(string); ok {
		if elem, isList := listKind(kind); isList {
			return decodeList(obj, docNo, elem, validate)
		}
	}
	r, err := decodeResource(obj, docNo, -1, "", "", validate)
	if err != nil {
		return nil, err
	}
	return []Resource{r}, nil
}

// listKind recognises "List" (elem "") and "<Kind>List" (elem Kind).
func listKind(kind string) (elem string, ok bool) {
	if strings.EqualFold(kind, "List") {
		return "", true
	}
	if n := len(kind) - len("List"); n > 0 && strings.EqualFold(kind[n:], "List") {
		if k, ok := LookupKind(kind[:n]); ok {
			return k.Kind, true
		}
	}
	return "", false
}

func decodeList(obj map[string]any, docNo int, elem string, validate bool) ([]Resource, error) {
	fail := func(field, format string, args ...any) error {
		return &DecodeError{Document: docNo, Item: -1, Err: FieldErrors{{Field: field, Detail: fmt.Sprintf(format, args...)}}}
	}
	av, _ := obj["apiVersion"].(string)
	switch av {
	case "", "v1", APIVersion, CalicoAPIVersion:
	default:
		return nil, fail("apiVersion", "%s is not supported for a list; use %s", quote(av), APIVersion)
	}
	if av == "v1" {
		av = ""
	}
	for _, k := range sortedAnyKeys(obj) {
		switch k {
		case "apiVersion", "kind", "items":
		case "metadata":
			if _, ok := obj[k].(map[string]any); !ok && obj[k] != nil {
				return nil, fail(k, "got %s; an object is required", describe(obj[k]))
			}
		default:
			return nil, fail(fieldPath("", k), "unknown field (a list has apiVersion, kind, metadata and items)")
		}
	}
	items, ok := obj["items"].([]any)
	if !ok && obj["items"] != nil {
		return nil, fail("items", "got %s; a list is required", describe(obj["items"]))
	}
	out := make([]Resource, 0, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, fail(index("items", i), "got %s; a resource is required", describe(it))
		}
		if k, _ := m["kind"].(string); k != "" {
			if _, nested := listKind(k); nested {
				return nil, fail(at(index("items", i), "kind"), "a list cannot contain a list")
			}
		}
		r, err := decodeResource(m, docNo, i, av, elem, validate)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// decodeResource decodes one resource object. listAPIVersion and listElem
// are what a typed List lets its items omit.
func decodeResource(obj map[string]any, docNo, item int, listAPIVersion, listElem string, validate bool) (Resource, error) {
	name := ""
	if md, ok := obj["metadata"].(map[string]any); ok {
		name, _ = md["name"].(string)
	}
	fail := func(kind string, err error) error {
		return &DecodeError{Document: docNo, Item: item, Kind: kind, Name: name, Err: err}
	}
	field := func(f, format string, args ...any) error {
		return FieldErrors{{Field: f, Detail: fmt.Sprintf(format, args...)}}
	}

	kindV := obj["kind"]
	if kindV == nil && listElem != "" {
		kindV = listElem
	}
	kindStr, ok := kindV.(string)
	switch {
	case kindV == nil:
		return nil, fail("", field("kind", "is required"))
	case !ok:
		return nil, fail("", field("kind", "got %s; a string is required", describe(kindV)))
	}
	if av, _ := obj["apiVersion"].(string); listElem == "" && isKubernetesDocument(av, kindStr) {
		r, kind, err := decodeKubernetes(obj, av, kindStr, validate)
		if err != nil {
			return nil, fail(kind, err)
		}
		return r, nil
	}
	k, ok := LookupKind(kindStr)
	if !ok {
		return nil, fail("", field("kind", "%s is not a known kind; use one of %s", quote(kindStr), kindNames()))
	}
	if listElem != "" && k.Kind != listElem {
		return nil, fail(k.Kind, field("kind", "%s is not allowed in a %sList", k.Kind, listElem))
	}

	avV := obj["apiVersion"]
	if avV == nil && listAPIVersion != "" {
		avV = listAPIVersion
	}
	av, ok := avV.(string)
	switch {
	case avV == nil:
		return nil, fail(k.Kind, field("apiVersion", "is required; use %s", APIVersion))
	case !ok:
		return nil, fail(k.Kind, field("apiVersion", "got %s; a string is required", describe(avV)))
	case av == APIVersion:
	case av == CalicoAPIVersion && k.Calico:
	case av == CalicoAPIVersion:
		return nil, fail(k.Kind, field("apiVersion", "%s is not accepted for %s, which is not a Calico kind; use %s", quote(av), k.Kind, APIVersion))
	default:
		want := APIVersion
		if k.Calico {
			want += " (or " + CalicoAPIVersion + ")"
		}
		return nil, fail(k.Kind, field("apiVersion", "%s is not supported; use %s", quote(av), want))
	}
	obj["kind"], obj["apiVersion"] = k.Kind, APIVersion

	r := k.NewFunc()
	var p problems
	p.checkValue("", obj, reflect.TypeOf(r).Elem())
	if err := p.err(); err != nil {
		return nil, fail(k.Kind, err)
	}
	b, err := json.Marshal(dropNulls(obj))
	if err == nil {
		err = json.Unmarshal(b, r)
	}
	if err != nil {
		return nil, fail(k.Kind, fmt.Errorf("decode: %w", err))
	}
	tm := r.GetTypeMeta()
	tm.APIVersion, tm.Kind = APIVersion, k.Kind
	if validate {
		SetDefaults(r)
		if err := Validate(r); err != nil {
			return nil, fail(k.Kind, err)
		}
	}
	return r, nil
}

func kindNames() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = k.Kind
	}
	return strings.Join(names, ", ")
}
