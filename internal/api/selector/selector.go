// Package selector parses and evaluates Calico label selectors, such as
//
//	app == "web" && (tier in {"db", "cache"} || !has(legacy))
//
// The grammar follows Calico's libcalico-go selector parser: terms (k == "v",
// k != "v", has(k), k in {...}, k not in {...}, k contains "s",
// k starts with "s", k ends with "s", all(), global()), then parentheses,
// then "!", then "&&", then "||", tightest first. Strings take single or
// double quotes and have no escapes. k != "v" and k not in {...} match when k
// is absent. The empty selector means all().
//
// A parsed Selector is immutable and safe for concurrent use. Its String is a
// canonical form in Calico's style (values double-quoted unless they contain
// a double quote, set members sorted and de-duplicated, every && and || group
// in parentheses), and Parse(s.String()).String() == s.String() always holds.
// UniqueID hashes the canonical form, so equivalent spellings share an ID.
//
// Differences from Calico, all deliberate: label keys must be valid
// Kubernetes keys (ValidateLabelKey), where Calico takes any run of
// [A-Za-z0-9_./-]; line breaks count as blanks; !(!x) canonicalises to x
// (Calico renders "!!x", which it then reads back as x); and input is
// limited to MaxLen bytes and MaxDepth levels of nesting.
//
// This package imports only the standard library; it must not import any
// other Tabby package.
package selector

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"slices"
	"strings"
)

const (
	// MaxLen is the longest selector, in bytes, that Parse accepts. It bounds
	// both the input and its canonical form, so a canonical form always
	// parses again.
	MaxLen = 4096
	// MaxDepth bounds the nesting of parentheses in the input and of
	// && / || groups in the canonical form.
	MaxDepth = 64
)

// Selector is a parsed label selector. The zero value and a nil *Selector
// both behave as all().
type Selector struct {
	root  node // nil only in the zero value
	canon string
	id    string
	keys  []string
}

var allSelector = newSelector(allNode{})

// Parse parses a selector expression. An empty or whitespace-only string
// means all(). Errors are *ParseError values that name the byte position and
// the offending token.
func Parse(s string) (*Selector, error) {
	if len(s) > MaxLen {
		return nil, &ParseError{Selector: s, Pos: MaxLen,
			Msg: fmt.Sprintf("selector is %d bytes long; the limit is %d", len(s), MaxLen)}
	}
	root, err := parse(s)
	if err != nil {
		return nil, err
	}
	if d := groupDepth(root); d > MaxDepth {
		return nil, &ParseError{Selector: s, Pos: 0,
			Msg: fmt.Sprintf("&& and || groups nest %d deep; the limit is %d", d, MaxDepth)}
	}
	sel := newSelector(root)
	if len(sel.canon) > MaxLen {
		return nil, &ParseError{Selector: s, Pos: 0,
			Msg: fmt.Sprintf("canonical form is %d bytes long; the limit is %d", len(sel.canon), MaxLen)}
	}
	return sel, nil
}

// MustParse is Parse for selectors known to be valid, such as constants; it
// panics on error.
func MustParse(s string) *Selector {
	sel, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

func newSelector(root node) *Selector {
	var b strings.Builder
	root.render(&b)
	canon := b.String()
	sum := sha256.Sum256([]byte(canon))
	// 10 bytes = 80 bits = exactly 16 base32 characters, no padding.
	id := strings.ToLower(base32.StdEncoding.EncodeToString(sum[:10]))
	var keys []string
	root.collectKeys(&keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	return &Selector{root: root, canon: canon, id: id, keys: keys}
}

func (s *Selector) norm() *Selector {
	if s == nil || s.root == nil {
		return allSelector
	}
	return s
}

// Evaluate reports whether a resource with these labels matches. A nil map
// is an empty label set.
func (s *Selector) Evaluate(labels map[string]string) bool {
	return s.norm().root.eval(labels)
}

// String returns the canonical form.
func (s *Selector) String() string { return s.norm().canon }

// UniqueID returns a short stable name for the selector: the first 80 bits of
// the SHA-256 of the canonical form, as 16 lowercase base32 characters
// ([a-z2-7]). It is suitable as part of an nftables set name.
func (s *Selector) UniqueID() string { return s.norm().id }

// IsAll reports whether the selector is exactly all() (including the empty
// selector). It does not try to prove that other expressions match
// everything.
func (s *Selector) IsAll() bool {
	_, ok := s.norm().root.(allNode)
	return ok
}

// IsGlobal reports whether the selector is exactly global(). In a rule's
// namespaceSelector, global() widens the scope to non-namespaced resources
// (global network sets, host endpoints); as a predicate it matches
// everything.
func (s *Selector) IsGlobal() bool {
	_, ok := s.norm().root.(globalNode)
	return ok
}

// LabelKeys returns the sorted, de-duplicated label keys that the selector
// mentions. The caller may modify the returned slice.
func (s *Selector) LabelKeys() []string {
	return slices.Clone(s.norm().keys)
}

// ParseError describes why a selector did not parse.
type ParseError struct {
	Selector string // the input, verbatim
	Pos      int    // 0-based byte offset of the offending token
	Msg      string // what was expected and what was found
}

// Error quotes the selector (its first 64 bytes if it is longer), then the
// position and the message.
func (e *ParseError) Error() string {
	return fmt.Sprintf("selector %s: position %d: %s", quoteClip(e.Selector), e.Pos, e.Msg)
}

// RequiredEqual returns a label equality every match must satisfy: the
// selector is `key == "value"`, or an && whose terms include one. ok is
// false when there is none (then every candidate must be evaluated). A
// label index uses it to look only at the entities holding that label.
func (s *Selector) RequiredEqual() (key, value string, ok bool) {
	if s == nil || s.root == nil {
		return "", "", false
	}
	return requiredEqual(s.root)
}

func requiredEqual(n node) (key, value string, ok bool) {
	switch n := n.(type) {
	case *cmpNode:
		if n.op == opEq {
			return n.key, n.val, true
		}
	case *andNode:
		for _, x := range n.xs {
			if k, v, ok := requiredEqual(x); ok {
				return k, v, true
			}
		}
	}
	return "", "", false
}
