package labpolicy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/lab"
)

// truthTable is a reachability matrix over a fixed list of containers:
// cell (from, to) is '.' allowed, 'X' denied, '-' the container itself
// (never probed), '?' not probed (an error). Tests write them as compact
// text, one row per source, one mark per destination in the list's order
// (spaces ignored, so columns can be grouped by namespace):
//
//	xa -.. XXX ...
//	xb .-. XXX ...
type truthTable struct {
	names []string
	group int // columns per group when printed
	cells map[[2]string]byte
}

// parseTable reads a truth table over names.
func parseTable(names []string, group int, text string) (*truthTable, error) {
	t := &truthTable{names: names, group: group, cells: map[[2]string]byte{}}
	seen := map[string]bool{}
	for i, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		from := fields[0]
		if !slices.Contains(names, from) {
			return nil, fmt.Errorf("line %d: row %q is not one of %v", i+1, from, names)
		}
		if seen[from] {
			return nil, fmt.Errorf("line %d: row %q given twice", i+1, from)
		}
		seen[from] = true
		marks := strings.Join(fields[1:], "")
		if len(marks) != len(names) {
			return nil, fmt.Errorf("line %d: row %s has %d marks, want %d", i+1, from, len(marks), len(names))
		}
		for j, to := range names {
			m := marks[j]
			switch {
			case m != '.' && m != 'X' && m != '-':
				return nil, fmt.Errorf("line %d: row %s column %s: mark %q, want '.', 'X' or '-'", i+1, from, to, m)
			case (m == '-') != (from == to):
				return nil, fmt.Errorf("line %d: row %s column %s: '-' marks exactly the container itself", i+1, from, to)
			}
			t.cells[[2]string{from, to}] = m
		}
	}
	if len(seen) != len(names) {
		var missing []string
		for _, n := range names {
			if !seen[n] {
				missing = append(missing, n)
			}
		}
		return nil, fmt.Errorf("rows missing: %v", missing)
	}
	return t, nil
}

// mustTable parses a table written in a test.
func mustTable(t testing.TB, names []string, group int, text string) *truthTable {
	t.Helper()
	tt, err := parseTable(names, group, text)
	if err != nil {
		t.Fatalf("truth table: %v\n%s", err, text)
	}
	return tt
}

// observedTable is what a probe saw, over names.
func observedTable(names []string, group int, r *lab.Reachability) *truthTable {
	t := &truthTable{names: names, group: group, cells: map[[2]string]byte{}}
	for _, from := range names {
		for _, to := range names {
			t.cells[[2]string{from, to}] = r.Cell(from, to)[0]
		}
	}
	return t
}

// allAllowed is the table with every pair allowed.
func allAllowed(names []string, group int) *truthTable {
	t := &truthTable{names: names, group: group, cells: map[[2]string]byte{}}
	for _, from := range names {
		for _, to := range names {
			m := byte('.')
			if from == to {
				m = '-'
			}
			t.cells[[2]string{from, to}] = m
		}
	}
	return t
}

func (t *truthTable) equal(o *truthTable) bool { return maps2Equal(t.cells, o.cells) }

func maps2Equal(a, b map[[2]string]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// String prints the table in the form tests write it, with a header.
func (t *truthTable) String() string {
	w := 0
	for _, n := range t.names {
		w = max(w, len(n))
	}
	var b strings.Builder
	row := func(label string, marks []string) {
		b.WriteString(fmt.Sprintf("%-*s ", w, label))
		for j, m := range marks {
			if j > 0 && t.group > 0 && j%t.group == 0 {
				b.WriteByte(' ')
			}
			b.WriteString(m)
		}
		b.WriteByte('\n')
	}
	for _, from := range t.names {
		marks := make([]string, len(t.names))
		for j, to := range t.names {
			marks[j] = string(t.cells[[2]string{from, to}])
		}
		row(from, marks)
	}
	return b.String()
}

// compare is the Kubernetes e2e "comparison" table: '.' where want and got
// agree, 'X' where they differ; and the differing cells.
func compare(want, got *truthTable) (string, []string) {
	c := &truthTable{names: want.names, group: want.group, cells: map[[2]string]byte{}}
	var diffs []string
	for _, from := range want.names {
		for _, to := range want.names {
			k := [2]string{from, to}
			if want.cells[k] == got.cells[k] {
				c.cells[k] = '.'
				continue
			}
			c.cells[k] = 'X'
			diffs = append(diffs, fmt.Sprintf("%s->%s: got %c, want %c", from, to, got.cells[k], want.cells[k]))
		}
	}
	return c.String(), diffs
}

func TestParseTable(t *testing.T) {
	names := []string{"a", "b", "c"}
	for _, tc := range []struct {
		name, text string
		want       map[[2]string]byte // nil: an error
		errHas     string
	}{
		{name: "ok", text: "\n a -.X\n b .-. \n c X X -\n", want: map[[2]string]byte{
			{"a", "a"}: '-', {"a", "b"}: '.', {"a", "c"}: 'X',
			{"b", "a"}: '.', {"b", "b"}: '-', {"b", "c"}: '.',
			{"c", "a"}: 'X', {"c", "b"}: 'X', {"c", "c"}: '-',
		}},
		{name: "unknown row", text: "a -..\nb .-.\nd ..-", errHas: `row "d"`},
		{name: "row twice", text: "a -..\na -..\nc ..-", errHas: "twice"},
		{name: "short row", text: "a -.\nb .-.\nc ..-", errHas: "2 marks, want 3"},
		{name: "bad mark", text: "a -.o\nb .-.\nc ..-", errHas: "mark 'o'"},
		{name: "dash off the diagonal", text: "a --.\nb .-.\nc ..-", errHas: "exactly the container itself"},
		{name: "self not dashed", text: "a ...\nb .-.\nc ..-", errHas: "exactly the container itself"},
		{name: "missing row", text: "a -..\nc ..-", errHas: "rows missing: [b]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTable(names, 0, tc.text)
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("parseTable: got error %v, want one containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.cells); diff != "" {
				t.Errorf("cells (-want +got):\n%s", diff)
			}
			// String reads back as the same table.
			back, err := parseTable(names, 0, got.String())
			if err != nil || !back.equal(got) {
				t.Errorf("String() does not read back: %v\n%s", err, got.String())
			}
		})
	}
}

func TestCompare(t *testing.T) {
	names := []string{"a", "b"}
	want := mustTable(t, names, 0, "a -.\nb X-")
	got := mustTable(t, names, 0, "a -X\nb X-")
	table, diffs := compare(want, got)
	if wantDiffs := []string{"a->b: got X, want ."}; !cmp.Equal(diffs, wantDiffs) {
		t.Errorf("diffs: got %v, want %v", diffs, wantDiffs)
	}
	if wantTable := "a .X\nb ..\n"; table != wantTable {
		t.Errorf("comparison table: got %q, want %q", table, wantTable)
	}
}

// FuzzParseTable: any text is parsed or rejected, never a panic, and a
// parsed table prints as text that parses back to it.
func FuzzParseTable(f *testing.F) {
	f.Add("a -.X\nb .-.\nc X X -")
	f.Add("a -..\na -..\nc ..-")
	f.Add("")
	f.Add("\n\n a\tb c")
	f.Fuzz(func(t *testing.T, text string) {
		names := []string{"a", "b", "c"}
		tt, err := parseTable(names, 2, text)
		if err != nil {
			return
		}
		back, err := parseTable(names, 2, tt.String())
		if err != nil || !back.equal(tt) {
			t.Fatalf("%q parsed, but its String %q does not read back (%v)", text, tt.String(), err)
		}
	})
}
