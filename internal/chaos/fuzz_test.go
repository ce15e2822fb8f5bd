package chaos

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// moduleRoot is the directory holding go.mod, found upwards from the
// package directory the test runs in.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// TestFuzzTargets: every parser an attacker can feed has a Go fuzz target
// with a committed seed corpus (testdata/fuzz/TARGET), which plain `go
// test` — and so `make test` — runs as regression tests; `make fuzz`
// (scripts/fuzz.sh) fuzzes every target for a while.
func TestFuzzTargets(t *testing.T) {
	root := moduleRoot(t)
	tests := []struct {
		what, dir, target string
	}{
		{"CNI request: network configuration", "internal/cni", "FuzzParseConfig"},
		{"CNI request: CNI_ARGS", "internal/cni", "FuzzParseCNIArgs"},
		{"CNI request: Mesos labels", "internal/cni", "FuzzSanitizeMesosLabel"},
		{"resource YAML/JSON decoding and validation", "internal/api", "FuzzDecode"},
		{"selectors", "internal/api/selector", "FuzzParse"},
		{"policy compiler", "internal/agent/policy", "FuzzCompile"},
		{"DNS message handling", "internal/dns", "FuzzHandler"},
		{"Mesos state decoder", "internal/dns/mesos", "FuzzDecode"},
	}
	for _, tc := range tests {
		t.Run(tc.what, func(t *testing.T) {
			dir := filepath.Join(root, tc.dir)
			files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
			if err != nil {
				t.Fatal(err)
			}
			decl := regexp.MustCompile(`(?m)^func ` + tc.target + `\(f \*testing\.F\)`)
			found := false
			for _, f := range files {
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				found = found || decl.Match(src)
			}
			if !found {
				t.Errorf("%s: no fuzz target %s in %s", tc.what, tc.target, tc.dir)
			}
			seeds, err := os.ReadDir(filepath.Join(dir, "testdata", "fuzz", tc.target))
			if err != nil || len(seeds) == 0 {
				t.Errorf("%s: no committed seed corpus in %s/testdata/fuzz/%s (%v)", tc.what, tc.dir, tc.target, err)
			}
		})
	}
	if fi, err := os.Stat(filepath.Join(root, "scripts", "fuzz.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("scripts/fuzz.sh: missing or not executable (%v)", err)
	}
}
