package selector

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits on label keys, as in Kubernetes.
const (
	maxKeyNameLen   = 63
	maxKeyPrefixLen = 253
)

// ValidateLabelKey checks a label key against the Kubernetes rules that
// Calico's API applies: an optional prefix and "/", then a name. The prefix
// is a lowercase DNS subdomain of at most 253 characters; the name has at
// most 63 characters from [A-Za-z0-9._-] and starts and ends with a letter
// or digit. Examples: "app", "calico/k8s_ns", "projectcalico.org/namespace".
func ValidateLabelKey(key string) error {
	if err := checkLabelKey(key); err != nil {
		return fmt.Errorf("invalid label key %s: %w", quoteClip(key), err)
	}
	return nil
}

func checkLabelKey(key string) error {
	prefix, name, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		name = key
	} else {
		if strings.Contains(name, "/") {
			return errors.New(`more than one "/"`)
		}
		if err := checkDNSSubdomain(prefix); err != nil {
			return fmt.Errorf("prefix %s: %w", quoteClip(prefix), err)
		}
	}
	return checkKeyName(name)
}

func checkKeyName(name string) error {
	switch {
	case name == "":
		return errors.New("name part is empty")
	case len(name) > maxKeyNameLen:
		return fmt.Errorf("name part is %d characters long; the limit is %d", len(name), maxKeyNameLen)
	case !isAlnum(name[0]) || !isAlnum(name[len(name)-1]):
		return errors.New("name part must start and end with a letter or digit")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("name part contains %q; allowed are letters, digits, '-', '_' and '.'", c)
		}
	}
	return nil
}

func checkDNSSubdomain(s string) error {
	switch {
	case s == "":
		return errors.New("empty; omit the \"/\" or name a DNS subdomain")
	case len(s) > maxKeyPrefixLen:
		return fmt.Errorf("%d characters long; the limit is %d", len(s), maxKeyPrefixLen)
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return errors.New("empty DNS label")
		}
		if !isLowerAlnum(label[0]) || !isLowerAlnum(label[len(label)-1]) {
			return fmt.Errorf("DNS label %s must start and end with a lowercase letter or digit", quoteClip(label))
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isLowerAlnum(c) && c != '-' {
				return fmt.Errorf("DNS label %s contains %q; allowed are lowercase letters, digits and '-'", quoteClip(label), c)
			}
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || 'A' <= c && c <= 'Z' }

// isKeyChar reports whether c may appear in a label key token. The lexer
// takes the longest run of these, as Calico's does, and then validates it.
func isKeyChar(c byte) bool {
	return isAlnum(c) || c == '_' || c == '.' || c == '/' || c == '-'
}

// maxQuoted is how much of a long input an error message quotes.
const maxQuoted = 64

// quoteClip quotes s for an error message, cutting it short if it is long.
func quoteClip(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}
