package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestSanitizeMesosLabel holds the table of Calico's utils tests, then
// cases of our own.
func TestSanitizeMesosLabel(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// Calico cni-plugin internal/pkg/utils/utils_test.go.
		{name: "valid", in: "k", want: "k"},
		{name: "dashes", in: "-my-val", want: "my-val"},
		{name: "double periods", in: "$my..val", want: "my.val"},
		{name: "special chars", in: "m$y.val", want: "m-y.val"},
		{name: "slashes", in: "//my/val/", want: "my.val"},
		{name: "mix of special chars", in: "some_val-with.lots*of^weird#characters", want: "some_val-with.lots-of-weird-characters"},
		// Ours.
		{name: "empty", in: "", want: ""},
		{name: "only invalid", in: "$$$", want: ""},
		{name: "run of invalid is one dash", in: "a$%^b", want: "a-b"},
		{name: "dash runs without a dot stay", in: "a--b", want: "a--b"},
		{name: "invalid next to dash", in: "a-$-b", want: "a---b"},
		{name: "dot dash run", in: "a-.-b", want: "a.b"},
		{name: "namespace key", in: "projectcalico.org/namespace", want: "projectcalico.org.namespace"},
		{name: "unicode", in: "café–bar", want: "caf-bar"},
		{name: "newline", in: "a\nb", want: "a-b"},
		{name: "invalid utf8", in: "a\xff\xfeb", want: "a-b"},
		{name: "underscores kept", in: "_a_", want: "_a_"},
		{name: "spaces", in: " web app ", want: "web-app"},
		{name: "shim ellipsis", in: "abcdef0...tail", want: "abcdef0.tail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SanitizeMesosLabel(tc.in); got != tc.want {
				t.Errorf("SanitizeMesosLabel(%q) = %q; want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestShortenLabelValue(t *testing.T) {
	long := strings.Repeat("x", 10) + strings.Repeat("0123456789", 10) // 110 bytes
	sum := sha256.Sum256([]byte(long))
	tests := []struct {
		name, in, want string
	}{
		{name: "short", in: "web", want: "web"},
		{name: "exactly 63", in: strings.Repeat("a", 63), want: strings.Repeat("a", 63)},
		{name: "64", in: strings.Repeat("a", 64), want: func() string {
			s := sha256.Sum256([]byte(strings.Repeat("a", 64)))
			return hex.EncodeToString(s[:])[:7] + "..." + strings.Repeat("a", 53)
		}()},
		{name: "110", in: long, want: hex.EncodeToString(sum[:])[:7] + "..." + long[110-53:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ShortenLabelValue(tc.in)
			if got != tc.want {
				t.Errorf("ShortenLabelValue(%q) = %q; want %q", tc.in, got, tc.want)
			}
			if len(got) > MaxLabelValueLen {
				t.Errorf("len(ShortenLabelValue(%q)) = %d; want at most %d", tc.in, len(got), MaxLabelValueLen)
			}
		})
	}
}

func TestMesosLabelValue(t *testing.T) {
	long := "/" + strings.Repeat("group/", 12) + "app" // a long Marathon app path
	sum := sha256.Sum256([]byte(long))
	tail := long[len(long)-53:]
	want := SanitizeMesosLabel(hex.EncodeToString(sum[:])[:7] + "..." + tail)
	if got := MesosLabelValue(long); got != want {
		t.Errorf("MesosLabelValue(%q) = %q; want %q", long, got, want)
	}
	if got := MesosLabelValue(long); strings.Contains(got, "...") || len(got) > MaxLabelValueLen {
		t.Errorf("MesosLabelValue(%q) = %q; want the ellipsis collapsed to '.' and at most 63 bytes", long, got)
	}
	if got, want := MesosLabelValue("/dev/web"), "dev.web"; got != want {
		t.Errorf("MesosLabelValue(/dev/web) = %q; want %q", got, want)
	}
}
