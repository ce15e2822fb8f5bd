// Package selector parses and evaluates Calico label selectors.
// Standard library only.
package selector

// Selector is a parsed label selector. (Stub: replaced by the full implementation.)
type Selector struct{ src string }

// Parse parses a selector expression. The empty string means all().
func Parse(s string) (*Selector, error) { return &Selector{src: s}, nil }

// Evaluate reports whether labels match.
func (s *Selector) Evaluate(labels map[string]string) bool { return true }

// String returns the canonical form.
func (s *Selector) String() string { return s.src }
