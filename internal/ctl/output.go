package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/tabbynet/tabby/internal/api"
)

// outputFormat is a parsed `get -o` value.
type outputFormat struct {
	kind    string // table, wide, yaml, json, custom-columns, go-template
	columns []customColumn
	tmpl    *template.Template
}

type customColumn struct {
	title string
	path  []pathStep
}

// pathStep is one step of a field path: a key, an index, or [*] (every item).
type pathStep struct {
	key   string
	index int // -1: a key step; -2: every item
}

// parseOutput reads -o (and --template) as calicoctl and kubectl do:
// table|ps|wide|yaml|json, custom-columns=TITLE:.path,..., go-template=TEXT,
// go-template-file=FILE, or go-template with --template TEXT.
func parseOutput(o, tmplFlag string) (outputFormat, error) {
	name, arg, hasArg := strings.Cut(o, "=")
	switch {
	case !hasArg && (name == "table" || name == "ps" || name == "wide" || name == "yaml" || name == "json"):
		if tmplFlag != "" {
			return outputFormat{}, fmt.Errorf("--template applies to -o go-template only")
		}
		if name == "ps" {
			name = "table"
		}
		return outputFormat{kind: name}, nil
	case name == "custom-columns" && hasArg:
		cols, err := parseColumns(arg)
		return outputFormat{kind: name, columns: cols}, err
	case name == "go-template" || name == "template" || name == "go-template-file":
		text := arg
		if name == "go-template-file" {
			b, err := os.ReadFile(arg)
			if err != nil {
				return outputFormat{}, fmt.Errorf("-o go-template-file: %w", err)
			}
			text = string(b)
		}
		if !hasArg {
			text = tmplFlag
		} else if tmplFlag != "" {
			return outputFormat{}, fmt.Errorf("give the template either in -o %s=... or in --template, not both", name)
		}
		if text == "" {
			return outputFormat{}, fmt.Errorf("-o %s: the template is empty (use -o go-template=TEXT or --template TEXT)", name)
		}
		t, err := template.New("output").Funcs(template.FuncMap{"json": toJSON}).Option("missingkey=zero").Parse(text)
		if err != nil {
			return outputFormat{}, fmt.Errorf("-o go-template: %v", err)
		}
		return outputFormat{kind: "go-template", tmpl: t}, nil
	}
	return outputFormat{}, fmt.Errorf("-o: %q is not one of table, wide, yaml, json, custom-columns=SPEC, go-template=TEXT, go-template-file=FILE", o)
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// parseColumns reads "NAME:.metadata.name,CIDR:.spec.cidr".
func parseColumns(spec string) ([]customColumn, error) {
	var cols []customColumn
	for i, part := range strings.Split(spec, ",") {
		title, path, ok := strings.Cut(part, ":")
		if !ok || title == "" || path == "" {
			return nil, fmt.Errorf("-o custom-columns: column %d %q: want TITLE:.field.path", i+1, part)
		}
		steps, err := parsePath(path)
		if err != nil {
			return nil, fmt.Errorf("-o custom-columns: column %q: %w", title, err)
		}
		cols = append(cols, customColumn{title: title, path: steps})
	}
	return cols, nil
}

// parsePath reads ".spec.ipNetworks[0]", "metadata.labels.app", ".spec.ports[*].port".
func parsePath(p string) ([]pathStep, error) {
	p = strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(p, "{"), "}"), ".")
	var steps []pathStep
	for _, seg := range strings.Split(p, ".") {
		key, rest, _ := strings.Cut(seg, "[")
		if key != "" {
			steps = append(steps, pathStep{key: key, index: -1})
		}
		for rest != "" {
			idx, after, ok := strings.Cut(rest, "]")
			if !ok {
				return nil, fmt.Errorf("%q: unclosed [", p)
			}
			switch n, err := strconv.Atoi(idx); {
			case idx == "*":
				steps = append(steps, pathStep{index: -2})
			case err != nil || n < 0:
				return nil, fmt.Errorf("%q: [%s] is not an index", p, idx)
			default:
				steps = append(steps, pathStep{index: n})
			}
			rest = strings.TrimPrefix(after, "[")
		}
		if key == "" && !strings.Contains(seg, "[") {
			return nil, fmt.Errorf("%q: empty field name", p)
		}
	}
	return steps, nil
}

// lookupPath follows steps through a generic JSON value.
func lookupPath(v any, steps []pathStep) []any {
	vals := []any{v}
	for _, s := range steps {
		var next []any
		for _, cur := range vals {
			switch {
			case s.index == -1:
				if m, ok := cur.(map[string]any); ok {
					if x, ok := m[s.key]; ok {
						next = append(next, x)
					}
				}
			case s.index == -2:
				if l, ok := cur.([]any); ok {
					next = append(next, l...)
				}
			default:
				if l, ok := cur.([]any); ok && s.index < len(l) {
					next = append(next, l[s.index])
				}
			}
		}
		vals = next
	}
	return vals
}

func cellString(vals []any) string {
	if len(vals) == 0 {
		return "<none>"
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case string:
			parts[i] = x
		case json.Number:
			parts[i] = x.String()
		case bool:
			parts[i] = strconv.FormatBool(x)
		default:
			b, _ := json.Marshal(x)
			parts[i] = string(b)
		}
	}
	return strings.Join(parts, ",")
}

// genericDoc is what `-o json` prints, as a generic value: one resource,
// or a List of them.
func genericDoc(rs []api.Resource, single bool) (any, error) {
	var buf bytes.Buffer
	if err := api.Encode(&buf, rs, "json"); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if m, ok := doc.(map[string]any); ok && !single && m["items"] == nil {
		// One resource of a listing: still a List, as for several.
		doc = map[string]any{"apiVersion": api.APIVersion, "kind": rs[0].KindInfo().Kind + "List", "items": []any{m}}
	}
	return doc, nil
}

// printCustom writes resources as custom columns or through a template.
// The template sees what -o json prints: one resource when one was named,
// else a List with items.
func printCustom(w io.Writer, f outputFormat, rs []api.Resource, named bool) error {
	single := named && len(rs) == 1
	if f.kind == "go-template" {
		doc, err := genericDoc(rs, single)
		if err != nil {
			return err
		}
		if err := f.tmpl.Execute(w, doc); err != nil {
			return fmt.Errorf("-o go-template: %v", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	titles := make([]string, len(f.columns))
	for i, c := range f.columns {
		titles[i] = c.title
	}
	fmt.Fprintln(tw, strings.Join(titles, "\t"))
	for _, r := range rs {
		doc, err := genericDoc([]api.Resource{r}, true)
		if err != nil {
			return err
		}
		row := make([]string, len(f.columns))
		for i, c := range f.columns {
			row[i] = cellString(lookupPath(doc, c.path))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}
