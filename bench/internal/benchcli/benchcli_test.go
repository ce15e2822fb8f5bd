package benchcli

import (
	"bytes"
	"strings"
	"testing"
)

func TestMain_ListAndBadInput(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantStderr string
	}{
		{"list", []string{"--list"}, 0, "cni ", ""},
		{"unknown benchmark", []string{"--only", "cni,nope"}, 2, "", `unknown benchmark "nope"`},
		{"unknown skip", []string{"--skip", "nope"}, 2, "", `unknown benchmark "nope"`},
		{"bad flag", []string{"--rounds", "x"}, 2, "", "invalid value"},
		{"helper without role", []string{"helper"}, 2, "", "missing role"},
		{"unknown helper", []string{"helper", "nope"}, 2, "", `unknown role "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.wantCode, errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.wantOut)
			}
			if !strings.Contains(errb.String(), tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.wantStderr)
			}
		})
	}
}

func TestSplitList(t *testing.T) {
	got := splitList(" cni, ,dns,")
	if strings.Join(got, "|") != "cni|dns" {
		t.Errorf("splitList = %q, want [cni dns]", got)
	}
}
