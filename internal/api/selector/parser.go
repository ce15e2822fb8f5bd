package selector

import "slices"

// parser is a recursive-descent parser over the lexer's tokens:
//
//	selector := ε | or EOF
//	or       := and { "||" and }
//	and      := unary { "&&" unary }
//	unary    := { "!" } primary
//	primary  := "(" or ")" | has(key) | all() | global()
//	          | key ("==" | "!=" | contains | starts with | ends with) string
//	          | key ("in" | "not in") "{" [ string { "," string } [","] ] "}"
//
// Recursion happens only at "(", which is limited to MaxDepth levels, so
// hostile input cannot exhaust the stack.
type parser struct {
	lx    lexer
	tok   token // the current (lookahead) token
	depth int   // open parentheses
}

func parse(src string) (node, error) {
	p := &parser{lx: lexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return allNode{}, nil
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tokEOF:
		return n, nil
	case tokRParen:
		return nil, p.errorf(`unbalanced ")": no "(" to close`)
	default:
		return nil, p.errorf(`expected "&&", "||" or end of input, found %s`, p.lx.describe(p.tok))
	}
}

func (p *parser) advance() error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

// errorf reports an error at the current token.
func (p *parser) errorf(format string, args ...any) error {
	return newError(p.lx.src, p.tok.pos, format, args...)
}

func (p *parser) or() (node, error) {
	return p.list(tokOr, p.and, func(xs []node) node { return &orNode{xs: xs} })
}

func (p *parser) and() (node, error) {
	return p.list(tokAnd, p.unary, func(xs []node) node { return &andNode{xs: xs} })
}

// list parses operands separated by sep, returning a lone operand as is.
func (p *parser) list(sep tokKind, operand func() (node, error), group func([]node) node) (node, error) {
	first, err := operand()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != sep {
		return first, nil
	}
	xs := []node{first}
	for p.tok.kind == sep {
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := operand()
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	return group(xs), nil
}

// unary parses a run of "!" (an even number cancels out, as in Calico) and
// the primary it applies to.
func (p *parser) unary() (node, error) {
	neg := false
	for p.tok.kind == tokNot {
		neg = !neg
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	x, err := p.primary()
	if err != nil {
		return nil, err
	}
	if neg {
		return negate(x), nil
	}
	return x, nil
}

func (p *parser) primary() (node, error) {
	t := p.tok
	switch t.kind {
	case tokHas:
		return &hasNode{key: t.val}, p.advance()
	case tokAll:
		return allNode{}, p.advance()
	case tokGlobal:
		return globalNode{}, p.advance()
	case tokLabel:
		if err := p.advance(); err != nil {
			return nil, err
		}
		return p.term(t.val)
	case tokLParen:
		return p.paren()
	case tokEOF:
		return nil, p.errorf("expected an expression, found end of input")
	default:
		return nil, p.errorf(`expected an expression (a label, has(), all(), global(), "!" or "("), found %s`,
			p.lx.describe(t))
	}
}

func (p *parser) paren() (node, error) {
	open := p.tok.pos
	if p.depth++; p.depth > MaxDepth {
		return nil, p.errorf("parentheses nest more than %d deep", MaxDepth)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	x, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokRParen {
		return nil, p.errorf(`expected ")" to close "(" at position %d, found %s`, open, p.lx.describe(p.tok))
	}
	p.depth--
	return x, p.advance()
}

// term parses what follows a label: an operator and its operand.
func (p *parser) term(key string) (node, error) {
	opTok := p.tok
	var op cmpOp
	switch opTok.kind {
	case tokEq:
		op = opEq
	case tokNe:
		op = opNe
	case tokContains:
		op = opContains
	case tokStartsWith:
		op = opStartsWith
	case tokEndsWith:
		op = opEndsWith
	case tokIn, tokNotIn:
		return p.set(key, opTok.kind == tokNotIn)
	default:
		return nil, p.errorf("expected an operator (==, !=, in, not in, contains, starts with, ends with) after label %s, found %s",
			quoteClip(key), p.lx.describe(opTok))
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokString {
		return nil, p.errorf("expected a quoted string after %s, found %s", p.lx.describe(opTok), p.lx.describe(p.tok))
	}
	val := p.tok.val
	return &cmpNode{op: op, key: key, val: val}, p.advance()
}

// set parses the {...} after in / not in. Like Calico it accepts an empty set
// and a trailing comma; members are sorted and de-duplicated.
func (p *parser) set(key string, negated bool) (node, error) {
	opTok := p.tok
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokLBrace {
		return nil, p.errorf(`expected "{" after %s, found %s`, p.lx.describe(opTok), p.lx.describe(p.tok))
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	var vals []string
	afterValue := false
	for p.tok.kind == tokString {
		vals = append(vals, p.tok.val)
		if err := p.advance(); err != nil {
			return nil, err
		}
		afterValue = true
		if p.tok.kind != tokComma {
			break
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		afterValue = false
	}
	if p.tok.kind != tokRBrace {
		if afterValue {
			return nil, p.errorf(`expected "," or "}" in the set, found %s`, p.lx.describe(p.tok))
		}
		return nil, p.errorf(`expected a quoted string or "}" in the set, found %s`, p.lx.describe(p.tok))
	}
	slices.Sort(vals)
	vals = slices.Compact(vals)
	return &setNode{key: key, vals: vals, negate: negated}, p.advance()
}
