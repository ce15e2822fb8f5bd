package selector

import (
	"slices"
	"strings"
)

// node is one element of a parsed selector. The parser keeps the tree shallow
// (MaxDepth), so the recursive methods cannot exhaust the stack.
type node interface {
	eval(labels map[string]string) bool
	render(b *strings.Builder)
	collectKeys(keys *[]string)
}

// cmpOp is a binary operator between a label and a string literal.
type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opContains
	opStartsWith
	opEndsWith
)

var cmpOpText = [...]string{
	opEq:         " == ",
	opNe:         " != ",
	opContains:   " contains ",
	opStartsWith: " starts with ",
	opEndsWith:   " ends with ",
}

// cmpNode is key <op> "value". Only != matches when the label is absent.
type cmpNode struct {
	op  cmpOp
	key string
	val string
}

func (n *cmpNode) eval(labels map[string]string) bool {
	v, ok := labels[n.key]
	if !ok {
		return n.op == opNe
	}
	switch n.op {
	case opEq:
		return v == n.val
	case opNe:
		return v != n.val
	case opContains:
		return strings.Contains(v, n.val)
	case opStartsWith:
		return strings.HasPrefix(v, n.val)
	default: // opEndsWith
		return strings.HasSuffix(v, n.val)
	}
}

func (n *cmpNode) render(b *strings.Builder) {
	b.WriteString(n.key)
	b.WriteString(cmpOpText[n.op])
	writeQuoted(b, n.val)
}

func (n *cmpNode) collectKeys(keys *[]string) { *keys = append(*keys, n.key) }

// setNode is key in {...} or, negated, key not in {...}; the latter matches
// when the label is absent. vals is sorted and free of duplicates.
type setNode struct {
	key    string
	vals   []string
	negate bool
}

func (n *setNode) eval(labels map[string]string) bool {
	v, ok := labels[n.key]
	if !ok {
		return n.negate
	}
	_, found := slices.BinarySearch(n.vals, v)
	return found != n.negate
}

func (n *setNode) render(b *strings.Builder) {
	b.WriteString(n.key)
	if n.negate {
		b.WriteString(" not in {")
	} else {
		b.WriteString(" in {")
	}
	for i, v := range n.vals {
		if i > 0 {
			b.WriteString(", ")
		}
		writeQuoted(b, v)
	}
	b.WriteByte('}')
}

func (n *setNode) collectKeys(keys *[]string) { *keys = append(*keys, n.key) }

// hasNode is has(key).
type hasNode struct{ key string }

func (n *hasNode) eval(labels map[string]string) bool {
	_, ok := labels[n.key]
	return ok
}

func (n *hasNode) render(b *strings.Builder) {
	b.WriteString("has(")
	b.WriteString(n.key)
	b.WriteByte(')')
}

func (n *hasNode) collectKeys(keys *[]string) { *keys = append(*keys, n.key) }

// notNode is !x. The parser never nests one notNode directly in another.
type notNode struct{ x node }

func (n *notNode) eval(labels map[string]string) bool { return !n.x.eval(labels) }

func (n *notNode) render(b *strings.Builder) {
	b.WriteByte('!')
	n.x.render(b)
}

func (n *notNode) collectKeys(keys *[]string) { n.x.collectKeys(keys) }

// negate returns !x, cancelling a double negation so that the canonical form
// never contains "!!" (which would parse back as no negation at all).
func negate(x node) node {
	if n, ok := x.(*notNode); ok {
		return n.x
	}
	return &notNode{x: x}
}

// andNode is (x && y && ...), with at least two operands.
type andNode struct{ xs []node }

func (n *andNode) eval(labels map[string]string) bool {
	for _, x := range n.xs {
		if !x.eval(labels) {
			return false
		}
	}
	return true
}

func (n *andNode) render(b *strings.Builder) { renderGroup(b, n.xs, " && ") }

func (n *andNode) collectKeys(keys *[]string) {
	for _, x := range n.xs {
		x.collectKeys(keys)
	}
}

// orNode is (x || y || ...), with at least two operands.
type orNode struct{ xs []node }

func (n *orNode) eval(labels map[string]string) bool {
	for _, x := range n.xs {
		if x.eval(labels) {
			return true
		}
	}
	return false
}

func (n *orNode) render(b *strings.Builder) { renderGroup(b, n.xs, " || ") }

func (n *orNode) collectKeys(keys *[]string) {
	for _, x := range n.xs {
		x.collectKeys(keys)
	}
}

func renderGroup(b *strings.Builder, xs []node, sep string) {
	b.WriteByte('(')
	for i, x := range xs {
		if i > 0 {
			b.WriteString(sep)
		}
		x.render(b)
	}
	b.WriteByte(')')
}

// allNode is all(): it matches everything.
type allNode struct{}

func (allNode) eval(map[string]string) bool { return true }
func (allNode) render(b *strings.Builder)   { b.WriteString("all()") }
func (allNode) collectKeys(*[]string)       {}

// globalNode is global(): as a predicate it matches everything; see
// Selector.IsGlobal for its meaning in a namespaceSelector.
type globalNode struct{}

func (globalNode) eval(map[string]string) bool { return true }
func (globalNode) render(b *strings.Builder)   { b.WriteString("global()") }
func (globalNode) collectKeys(*[]string)       {}

// writeQuoted writes a string literal the way Calico does: in double quotes
// unless the value contains one, then in single quotes. A parsed value never
// contains both, since literals have no escapes.
func writeQuoted(b *strings.Builder, v string) {
	q := byte('"')
	if strings.IndexByte(v, '"') >= 0 {
		q = '\''
	}
	b.WriteByte(q)
	b.WriteString(v)
	b.WriteByte(q)
}

// groupDepth is how deeply && and || groups nest, which is also the paren
// depth of the canonical form.
func groupDepth(n node) int {
	switch n := n.(type) {
	case *notNode:
		return groupDepth(n.x)
	case *andNode:
		return 1 + maxGroupDepth(n.xs)
	case *orNode:
		return 1 + maxGroupDepth(n.xs)
	default:
		return 0
	}
}

func maxGroupDepth(xs []node) int {
	d := 0
	for _, x := range xs {
		d = max(d, groupDepth(x))
	}
	return d
}
