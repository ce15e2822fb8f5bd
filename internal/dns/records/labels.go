package records

import (
	"crypto/sha1"
	"encoding/binary"
	"strings"
)

// LabelFunc turns an arbitrary string into one DNS label.
type LabelFunc func(string) string

// RFC1123 makes a DNS label the way Mesos-DNS does (records/labels): ASCII
// letters are lower-cased, '.', '_' and '-' become '-', everything else is
// dropped, leading and trailing '-' are trimmed and the label is cut at 63
// characters (skipping dashes at the cut, as Mesos-DNS's trimCut does).
func RFC1123(name string) string { return label(name, 63, "-", "-") }

// RFC952 is RFC1123 with the older rules Mesos-DNS applies under
// EnforceRFC952: at most 24 characters and no leading digit.
func RFC952(name string) string { return label(name, 24, "-0123456789", "-") }

func label(name string, maxlen int, left, right string) string {
	return trimCut(strings.Map(labelRune, name), maxlen, left, right)
}

func labelRune(r rune) rune {
	switch {
	case r >= 'A' && r <= 'Z':
		return r - 'A' + 'a'
	case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		return r
	case r == '-' || r == '.' || r == '_':
		return '-'
	default:
		return -1
	}
}

// trimCut trims the left cutset, cuts at maxlen, trims the right cutset at
// the cut and then fills up from after the trimmed run, exactly as
// Mesos-DNS does (so that long names get the same labels).
func trimCut(label string, maxlen int, left, right string) string {
	trim := strings.TrimLeft(label, left)
	size := min(len(trim), maxlen)
	head := strings.TrimRight(trim[:size], right)
	if len(head) == size {
		return head
	}
	tail := strings.TrimLeft(trim[size:], right)
	if len(tail) > 0 {
		return head + tail[:min(len(tail), size-len(head))]
	}
	return head
}

// DomainFrag splits name at sep, makes each part a label and joins the
// non-empty ones with sep: how Mesos-DNS turns a framework name into a
// domain fragment ("Cassandra.Prod_1" → "cassandra.prod-1").
func DomainFrag(name, sep string, fn LabelFunc) string {
	var parts []string
	for _, p := range strings.Split(name, sep) {
		if l := fn(p); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, sep)
}

// zbase32 is the alphabet of z-base-32 (human-oriented base 32).
const zbase32 = "ybndrfg8ejkmcpqxot1uwisza345h769"

// TaskHash is the 5-character tag of a canonical task name: the first five
// z-base-32 characters of the SHA-1 of the task ID (Mesos-DNS hashString).
func TaskHash(taskID string) string {
	sum := sha1.Sum([]byte(taskID))
	v := binary.BigEndian.Uint32(sum[:4])
	var out [5]byte
	for i := range out {
		out[i] = zbase32[(v>>(27-5*uint(i)))&31]
	}
	return string(out[:])
}

// slaveIDTail is the part of an agent ID after its last '-', lower-cased
// ("…-S1" → "s1"); made a label so a node name used as agent ID stays one
// label.
func slaveIDTail(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		id = id[i+1:]
	}
	return RFC1123(strings.ToLower(id))
}
