package api

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// This file checks a generic JSON value (from YAML or JSON input) against
// the Go type it is about to be decoded into, before decoding. encoding/json
// would accept unknown fields silently (or reject them without a path) and
// matches field names case-insensitively; this check rejects every unknown
// or misspelt field and every wrong-typed value, naming its full path.

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

type jsonField struct {
	name string
	typ  reflect.Type
}

var fieldCache sync.Map // reflect.Type → map[string]jsonField

// jsonFields lists the JSON fields of a struct type, embedded structs
// without a JSON name inlined, as encoding/json does.
func jsonFields(t reflect.Type) map[string]jsonField {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]jsonField)
	}
	fields := map[string]jsonField{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if sf.Anonymous && name == "" {
				ft := sf.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			if _, dup := fields[name]; !dup {
				fields[name] = jsonField{name: name, typ: sf.Type}
			}
		}
	}
	walk(t)
	fieldCache.Store(t, fields)
	return fields
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

func fieldPath(path, k string) string {
	if plainKey.MatchString(k) {
		return at(path, k)
	}
	return key(path, k)
}

// checkValue checks v against type t and records problems under path.
func (p *problems) checkValue(path string, v any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return // null: the field is unset
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		b, err := json.Marshal(v)
		if err == nil {
			err = reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(b)
		}
		if err != nil {
			p.add(path, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			p.add(path, "got %s; an object is required", describe(v))
			return
		}
		fields := jsonFields(t)
		for _, k := range sortedAnyKeys(m) {
			f, ok := fields[k]
			if !ok {
				p.add(fieldPath(path, k), "unknown field%s", suggest(k, fields))
				continue
			}
			p.checkValue(fieldPath(path, k), m[k], f.typ)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			p.add(path, "got %s; an object is required", describe(v))
			return
		}
		for _, k := range sortedAnyKeys(m) {
			if m[k] == nil {
				p.add(key(path, k), "null is not allowed here; use \"\" for an empty value")
				continue
			}
			p.checkValue(key(path, k), m[k], t.Elem())
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			p.add(path, "got %s; a list is required", describe(v))
			return
		}
		for i, e := range l {
			if e == nil {
				p.add(index(path, i), "null is not allowed in a list")
				continue
			}
			p.checkValue(index(path, i), e, t.Elem())
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			p.add(path, "got %s; a string is required (quote the value)", describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			p.add(path, "got %s; use true or false", describe(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			p.add(path, "got %s; a number is required", describe(v))
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			p.add(path, "%s %s", n, numberProblem(n, t))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			p.add(path, "got %s; a number is required", describe(v))
			return
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			p.add(path, "%s %s", n, numberProblem(n, t))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			p.add(path, "got %s; a number is required", describe(v))
			return
		}
		if _, err := strconv.ParseFloat(n.String(), t.Bits()); err != nil {
			p.add(path, "%s is out of range", n)
		}
	case reflect.Interface:
		// Anything goes (validated later if it matters).
	default:
		p.add(path, "cannot be decoded (unsupported type %s)", t)
	}
}

// numberProblem says why n does not fit the integer type t.
func numberProblem(n json.Number, t reflect.Type) string {
	s := n.String()
	unsigned := t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64
	switch {
	case strings.ContainsAny(s, ".eE"):
		return "is not a plain integer"
	case unsigned && strings.HasPrefix(s, "-"):
		return "must not be negative"
	case unsigned:
		return fmt.Sprintf("is out of range (0 to %d)", uint64(math.MaxUint64)>>(64-t.Bits()))
	default:
		return fmt.Sprintf("is out of range (%d to %d)", int64(math.MinInt64)>>(64-t.Bits()), int64(math.MaxInt64)>>(64-t.Bits()))
	}
}

func sortedAnyKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describe names a generic JSON value for an error message.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return "the string " + quote(v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// suggest proposes the field the user probably meant.
func suggest(k string, fields map[string]jsonField) string {
	best, bestDist := "", 3
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.EqualFold(n, k) {
			return fmt.Sprintf(" (did you mean %q?)", n)
		}
		if d := editDistance(strings.ToLower(k), strings.ToLower(n), bestDist); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b, or max if it is at
// least max (or the strings are long).
func editDistance(a, b string, max int) int {
	if len(a) > 64 || len(b) > 64 {
		return max
	}
	if d := len(a) - len(b); d >= max || -d >= max {
		return max
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			c = min(c, prev[j]+1, cur[j-1]+1)
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], max)
}

// dropNulls removes object members whose value is null (checkValue has
// already rejected nulls where they are not allowed), so that decoding
// leaves those fields unset.
func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if e == nil {
				delete(v, k)
				continue
			}
			v[k] = dropNulls(e)
		}
	case []any:
		for i, e := range v {
			v[i] = dropNulls(e)
		}
	}
	return v
}
