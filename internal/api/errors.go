package api

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one problem with one field of a resource. Field is the path
// of the field inside the resource, e.g.
// "spec.ingress[0].destination.ports[1]"; Detail says what is wrong and
// quotes the bad value.
type FieldError struct {
	Field  string
	Detail string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Detail
	}
	return e.Field + ": " + e.Detail
}

// FieldErrors is every problem Validate (or strict decoding) found in one
// resource, in the order the fields appear. Its Error joins them with "; ".
type FieldErrors []FieldError

// maxReported bounds how many problems an error message lists.
const maxReported = 10

func (l FieldErrors) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i == maxReported {
			fmt.Fprintf(&b, "; and %d more problems", len(l)-maxReported)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// DecodeError says which document (and which List item) of a manifest a
// problem is in, and which resource it concerns when that is known:
//
//	document 2: NetworkPolicy "allow-web": spec.ingress[0].destination.ports[1]: "80-x" is not a port or range
type DecodeError struct {
	Document int    // 1-based index among the non-empty documents of the input
	Item     int    // 0-based index in a List's items, or -1
	Kind     string // canonical kind, when known
	Name     string // metadata.name, when known
	Err      error
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "document %d: ", e.Document)
	if e.Item >= 0 {
		fmt.Fprintf(&b, "items[%d]: ", e.Item)
	}
	if e.Kind != "" {
		b.WriteString(e.Kind)
		if e.Name != "" {
			fmt.Fprintf(&b, " %s", quote(e.Name))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// problems collects FieldErrors.
type problems struct{ list FieldErrors }

func (p *problems) add(field, format string, args ...any) {
	p.list = append(p.list, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return p.list
}

// quote quotes a user-supplied value for an error message, shortening very
// long values so one bad field cannot flood the output.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// at and index build field paths.
func at(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// key is the path of a map entry: labels["app"].
func key(path, k string) string { return path + "[" + strconv.Quote(k) + "]" }
