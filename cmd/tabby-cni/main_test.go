package main

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// binDir holds the built plugin as "tabby" and a "tabby-ipam" symlink,
// and the test plugin firstplugin.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tabby-cni-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := build(dir)
	if code == 0 {
		code = m.Run()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// build builds the plugin as it must be shipped: static (CGO_ENABLED=0;
// a dynamically linked binary starts about a millisecond slower) and
// stripped.
func build(dir string) int {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X github.com/tabbynet/tabby/internal/version.Version=v0.0.0-test", "-o", filepath.Join(dir, "tabby"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build tabby-cni: %v\n", err)
		return 1
	}
	if err := os.Symlink("tabby", filepath.Join(dir, "tabby-ipam")); err != nil {
		fmt.Fprintf(os.Stderr, "symlink tabby-ipam: %v\n", err)
		return 1
	}
	// The plugin that runs before tabby in the chain tests.
	cmd = exec.Command("go", "build", "-o", filepath.Join(dir, "firstplugin"), "./testdata/firstplugin")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build the test plugin firstplugin: %v\n", err)
		return 1
	}
	return 0
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want action
	}{
		{name: "runtime exec", args: []string{"/opt/cni/bin/tabby"}, want: actionCNI},
		{name: "no argv", args: nil, want: actionCNI},
		{name: "-v", args: []string{"tabby", "-v"}, want: actionVersion},
		{name: "--version", args: []string{"tabby-ipam", "--version"}, want: actionVersion},
		{name: "version", args: []string{"tabby", "version"}, want: actionVersion},
		{name: "other argument", args: []string{"tabby", "-t"}, want: actionCNI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := dispatch(tc.args); got != tc.want {
				t.Errorf("dispatch(%q) = %v; want %v", tc.args, got, tc.want)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	out, err := exec.Command(filepath.Join(binDir, "tabby"), "-v").Output()
	if err != nil {
		t.Fatalf("tabby -v: %v", err)
	}
	if !strings.Contains(string(out), "tabby-cni v0.0.0-test") {
		t.Errorf("tabby -v = %q; want the build version", out)
	}
	// No CNI_COMMAND: skel prints About and the versions on stderr.
	cmd := exec.Command(filepath.Join(binDir, "tabby"))
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tabby without CNI_COMMAND: %v", err)
	}
	if !strings.Contains(stderr.String(), "tabby-cni v0.0.0-test") || !strings.Contains(stderr.String(), "0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0") {
		t.Errorf("stderr = %q; want About and the supported versions", stderr.String())
	}
}

// TestStaticBinary checks the shipped build has no ELF interpreter.
func TestStaticBinary(t *testing.T) {
	f, err := elf.Open(filepath.Join(binDir, "tabby"))
	if err != nil {
		t.Fatalf("open binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("tabby-cni is dynamically linked; build it with CGO_ENABLED=0")
		}
	}
}

// BenchmarkExecVersion measures a whole exec of the plugin answering
// VERSION (what every runtime does first) and reports the median and the
// binary's size.
func BenchmarkExecVersion(b *testing.B) {
	bin := filepath.Join(binDir, "tabby")
	fi, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	for b.Loop() {
		cmd := exec.Command(bin)
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		cmd.Stdin = strings.NewReader(`{"cniVersion":"1.1.0"}`)
		start := time.Now()
		out, err := cmd.Output()
		times = append(times, time.Since(start))
		if err != nil {
			b.Fatalf("VERSION: %v", err)
		}
		var v struct{ SupportedVersions []string }
		if err := json.Unmarshal(out, &v); err != nil || len(v.SupportedVersions) != 7 {
			b.Fatalf("VERSION output %q: %v", out, err)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(fi.Size())/(1<<20), "binary-MiB")
}

// TestVersionSameAsTabby builds both binaries the way `make build` does
// and checks that `tabby-cni --version` names the version `tabby version
// --client` prints (without --client, version also asks the cluster).
func TestVersionSameAsTabby(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries with make")
	}
	bin := t.TempDir()
	const v = "v9.8.7-same"
	cmd := exec.Command("make", "-C", "../..", "build", "BIN="+bin, "VERSION="+v)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	cli, err := exec.Command(filepath.Join(bin, "tabby"), "version", "--client").Output()
	if err != nil {
		t.Fatalf("tabby version --client: %v", err)
	}
	plugin, err := exec.Command(filepath.Join(bin, "tabby-cni"), "--version").Output()
	if err != nil {
		t.Fatalf("tabby-cni --version: %v", err)
	}
	if got, want := strings.TrimSpace(string(cli)), "Client Version:    "+v; got != want {
		t.Errorf("tabby version --client = %q; want %q", got, want)
	}
	if !strings.HasPrefix(string(plugin), "tabby-cni "+v+":") {
		t.Errorf("tabby-cni --version = %q; want it to start with %q", plugin, "tabby-cni "+v+":")
	}
}
