package selector

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokKind is the kind of a lexical token.
type tokKind uint8

const (
	tokEOF tokKind = iota
	tokLabel
	tokString
	tokLBrace
	tokRBrace
	tokComma
	tokEq
	tokNe
	tokIn
	tokNotIn
	tokContains
	tokStartsWith
	tokEndsWith
	tokNot
	tokAnd
	tokOr
	tokLParen
	tokRParen
	tokAll
	tokGlobal
	tokHas
)

// token is one lexical token; src[pos:end] is its text.
type token struct {
	kind tokKind
	pos  int
	end  int
	val  string // the key of a label or has(), the value of a string
}

// lexer splits a selector into tokens on demand, so that the first error in
// the input is the one reported. Like Calico's tokenizer it is contextual:
// right after a label it reads an operator word (in, not in, contains,
// starts with, ends with), elsewhere a label or has(/all(/global(.
type lexer struct {
	src        string
	pos        int
	afterLabel bool   // the previous token was a label
	lastLabel  string // that label's key
}

func newError(src string, pos int, format string, args ...any) *ParseError {
	return &ParseError{Selector: src, Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) errAt(pos int, format string, args ...any) *ParseError {
	return newError(l.src, pos, format, args...)
}

// isSpace accepts Calico's blanks (space, tab) and also line breaks, which
// YAML block scalars leave behind.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (l *lexer) skipSpaceFrom(p int) int {
	for p < len(l.src) && isSpace(l.src[p]) {
		p++
	}
	return p
}

func (l *lexer) keyRunFrom(p int) int {
	for p < len(l.src) && isKeyChar(l.src[p]) {
		p++
	}
	return p
}

// describeAt names the input at p for an error message: the run of key
// characters there, or the single character, or the end of input.
func (l *lexer) describeAt(p int) string {
	if p >= len(l.src) {
		return "end of input"
	}
	if end := l.keyRunFrom(p); end > p {
		return quoteClip(l.src[p:end])
	}
	r, _ := utf8.DecodeRuneInString(l.src[p:])
	if r == utf8.RuneError {
		return fmt.Sprintf("byte %#02x", l.src[p])
	}
	return strconv.QuoteRune(r)
}

// describe names a token for an error message.
func (l *lexer) describe(t token) string {
	switch t.kind {
	case tokEOF:
		return "end of input"
	case tokLabel:
		return "label " + quoteClip(t.val)
	case tokString:
		return "string " + quoteClip(t.val)
	default:
		return quoteClip(l.src[t.pos:t.end])
	}
}

func (l *lexer) emit(kind tokKind, start, end int, val string) (token, error) {
	l.pos = end
	return token{kind: kind, pos: start, end: end, val: val}, nil
}

// next returns the next token, or a *ParseError.
func (l *lexer) next() (token, error) {
	start := l.skipSpaceFrom(l.pos)
	afterLabel := l.afterLabel
	l.afterLabel = false
	if start == len(l.src) {
		return l.emit(tokEOF, start, start, "")
	}
	rest := l.src[start:]
	switch c := rest[0]; c {
	case '(':
		return l.emit(tokLParen, start, start+1, "")
	case ')':
		return l.emit(tokRParen, start, start+1, "")
	case '{':
		return l.emit(tokLBrace, start, start+1, "")
	case '}':
		return l.emit(tokRBrace, start, start+1, "")
	case ',':
		return l.emit(tokComma, start, start+1, "")
	case '"', '\'':
		i := strings.IndexByte(rest[1:], c)
		if i < 0 {
			return token{}, l.errAt(start, "unterminated string: no closing %s", strconv.QuoteRune(rune(c)))
		}
		return l.emit(tokString, start, start+i+2, rest[1:i+1])
	case '=':
		if strings.HasPrefix(rest, "==") {
			return l.emit(tokEq, start, start+2, "")
		}
		return token{}, l.errAt(start, `expected "==", found "="`)
	case '!':
		if strings.HasPrefix(rest, "!=") {
			return l.emit(tokNe, start, start+2, "")
		}
		return l.emit(tokNot, start, start+1, "")
	case '&':
		if strings.HasPrefix(rest, "&&") {
			return l.emit(tokAnd, start, start+2, "")
		}
		return token{}, l.errAt(start, `expected "&&", found "&"`)
	case '|':
		if strings.HasPrefix(rest, "||") {
			return l.emit(tokOr, start, start+2, "")
		}
		return token{}, l.errAt(start, `expected "||", found "|"`)
	}
	if afterLabel {
		return l.operator(start)
	}
	switch {
	case strings.HasPrefix(rest, "has("):
		return l.has(start)
	case strings.HasPrefix(rest, "all("):
		return l.emptyCall(start, "all(", tokAll)
	case strings.HasPrefix(rest, "global("):
		return l.emptyCall(start, "global(", tokGlobal)
	}
	end := l.keyRunFrom(start)
	if end == start {
		return token{}, l.errAt(start, "unexpected character %s", l.describeAt(start))
	}
	key := l.src[start:end]
	if err := checkLabelKey(key); err != nil {
		return token{}, l.errAt(start, "invalid label key %s: %v", quoteClip(key), err)
	}
	l.afterLabel, l.lastLabel = true, key
	return l.emit(tokLabel, start, end, key)
}

// operator reads the operator word after a label. As in Calico, the words
// need no space after them (a in{"x"}) and the two-word operators may also
// be written as one word (a notin {"x"}, a startswith "x").
func (l *lexer) operator(start int) (token, error) {
	rest := l.src[start:]
	switch {
	case strings.HasPrefix(rest, "contains"):
		return l.emit(tokContains, start, start+len("contains"), "")
	case strings.HasPrefix(rest, "starts"):
		return l.twoWords(start, "starts", "with", tokStartsWith)
	case strings.HasPrefix(rest, "ends"):
		return l.twoWords(start, "ends", "with", tokEndsWith)
	case strings.HasPrefix(rest, "not"):
		return l.twoWords(start, "not", "in", tokNotIn)
	case strings.HasPrefix(rest, "in"):
		return l.emit(tokIn, start, start+len("in"), "")
	}
	return token{}, l.errAt(start, "expected an operator (==, !=, in, not in, contains, starts with, ends with) after label %s, found %s",
		quoteClip(l.lastLabel), l.describeAt(start))
}

func (l *lexer) twoWords(start int, first, second string, kind tokKind) (token, error) {
	p := l.skipSpaceFrom(start + len(first))
	if !strings.HasPrefix(l.src[p:], second) {
		return token{}, l.errAt(p, "expected %q after %q, found %s", second, first, l.describeAt(p))
	}
	return l.emit(kind, start, p+len(second), "")
}

// has reads has(key), allowing blanks inside the parentheses.
func (l *lexer) has(start int) (token, error) {
	keyStart := l.skipSpaceFrom(start + len("has("))
	keyEnd := l.keyRunFrom(keyStart)
	if keyEnd == keyStart {
		return token{}, l.errAt(keyStart, "expected a label key inside has(), found %s", l.describeAt(keyStart))
	}
	key := l.src[keyStart:keyEnd]
	if err := checkLabelKey(key); err != nil {
		return token{}, l.errAt(keyStart, "invalid label key %s: %v", quoteClip(key), err)
	}
	p := l.skipSpaceFrom(keyEnd)
	if p == len(l.src) || l.src[p] != ')' {
		return token{}, l.errAt(p, `expected ")" to close "has(", found %s`, l.describeAt(p))
	}
	return l.emit(tokHas, start, p+1, key)
}

// emptyCall reads all() or global(), allowing blanks inside the parentheses.
func (l *lexer) emptyCall(start int, open string, kind tokKind) (token, error) {
	p := l.skipSpaceFrom(start + len(open))
	if p == len(l.src) || l.src[p] != ')' {
		return token{}, l.errAt(p, "expected %q after %q, found %s", ")", open, l.describeAt(p))
	}
	return l.emit(kind, start, p+1, "")
}
