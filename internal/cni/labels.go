package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// MaxLabelValueLen is the longest label value; longer Mesos values are
// shortened by ShortenLabelValue.
const MaxLabelValueLen = 63

// SanitizeMesosLabel turns a Mesos label key or value (any unicode) into a
// valid label string exactly as Calico's CNI plugin does: '/' becomes '.';
// every run of characters outside [-_.a-zA-Z0-9] becomes one '-'; every run
// of '.' and '-' holding at least one '.' becomes one '.'; leading and
// trailing '.' and '-' are dropped.
func SanitizeMesosLabel(s string) string {
	// Steps 1 and 2. Working on bytes is the same as on runes here: every
	// byte of a multi-byte (or invalid) UTF-8 sequence is outside the set,
	// and a run collapses to one '-' either way.
	b := make([]byte, 0, len(s))
	inInvalid := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '/' {
			c = '.'
		}
		if labelChar(c) {
			b = append(b, c)
			inInvalid = false
			continue
		}
		if !inInvalid {
			b = append(b, '-')
			inInvalid = true
		}
	}
	// Step 3: collapse [.-] runs that contain a '.'.
	out := b[:0]
	for i := 0; i < len(b); {
		if b[i] != '.' && b[i] != '-' {
			out = append(out, b[i])
			i++
			continue
		}
		j, dot := i, false
		for j < len(b) && (b[j] == '.' || b[j] == '-') {
			dot = dot || b[j] == '.'
			j++
		}
		if dot {
			out = append(out, '.')
		} else {
			out = append(out, b[i:j]...)
		}
		i = j
	}
	// Step 4: trim.
	return strings.Trim(string(out), ".-")
}

func labelChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// ShortenLabelValue shortens a value longer than MaxLabelValueLen bytes the
// way DC/OS's calico shim did (D2IQ-62219): the first 7 hex digits of the
// value's SHA-256, "...", then its last 53 bytes. Shorter values are
// returned unchanged.
func ShortenLabelValue(v string) string {
	if len(v) <= MaxLabelValueLen {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])[:7] + "..." + v[len(v)-53:]
}

// MesosLabelValue is what a Mesos label value becomes on the endpoint:
// shortened as DC/OS's shim, then sanitized as Calico's plugin (the shim
// ran before the plugin), so the "..." collapses to ".".
func MesosLabelValue(v string) string { return SanitizeMesosLabel(ShortenLabelValue(v)) }
