// Package labtest holds what every test that builds labs needs: the tabby
// and tabby-cni binaries built once per test process, short unique lab
// names, and a logger that writes into the test's log. Tests only: it
// imports testing, and nothing of Tabby's.
package labtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds tabby and tabby-cni (static) once per test process and
// returns the directory holding them. Call Cleanup from TestMain.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "tabby-labtest-"); buildErr != nil {
			return
		}
		for _, pkg := range []string{"tabby", "tabby-cni"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, pkg), "github.com/tabbynet/tabby/cmd/"+pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Cleanup removes the binaries Binaries built.
func Cleanup() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// Name returns prefix plus 4 random hex digits (lab names are at most 8
// characters, so keep prefix to 4).
func Name(prefix string) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

type logWriter struct {
	t  testing.TB
	mu *sync.Mutex
	ok *bool
}

func (w logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.ok {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Logger logs at level and above into t's log, and drops what comes after
// the test ended (goroutines of the lab may still log while it is torn down).
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	ok := true
	mu := &sync.Mutex{}
	t.Cleanup(func() { mu.Lock(); ok = false; mu.Unlock() })
	return slog.New(slog.NewTextHandler(logWriter{t, mu, &ok}, &slog.HandlerOptions{Level: level}))
}
