package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// allowedSkips are the only reasons a test may skip other than -short
// (an `if testing.Short()` around the call). Each names the file and a
// prefix of the skip's message, and says why it is not a silent gap. Keep
// this list short: a missing tool or root is never one of them (NeedTool
// and NeedRoot fail instead).
var allowedSkips = []struct{ file, prefix, why string }{
	{
		file:   "internal/agent/routing/routinglab/lab_test.go",
		prefix: "SKIP, NOT A PASS: this kernel cannot create IP-in-IP devices",
		why:    "a kernel feature, not a package: without the ipip module no IP-in-IP traffic can run; the message says it is not a pass, and TestPrivilegedLabIPIPUnsupported runs in its place",
	},
	{
		file:   "internal/agent/routing/routinglab/lab_test.go",
		prefix: "this kernel has IP-in-IP;",
		why:    "the other half of that pair: TestPrivilegedLabIPIPUnsupported has nothing to check where ipip works, and TestPrivilegedLabIPIP runs instead",
	},
	{
		file:   "internal/datastore/datastoretest/watch.go",
		prefix: "harness cannot ",
		why:    "a contract case the in-memory store has no way to stage (compaction, a backend outage); the etcd harness supplies the hook and runs it",
	},
}

// skipCall is one t.Skip, t.Skipf or t.SkipNow in the tree.
type skipCall struct {
	pos    token.Position
	msg    string // the first argument's text; "" for SkipNow
	short  bool   // inside `if testing.Short() { ... }`
	reason string // why it is allowed; "" if it is not
}

// TestNoSilentSkips reads every test file of the module (and every file
// that imports testing) and lists each Skip call with its reason. It
// fails on a skip that is neither under testing.Short() nor in
// allowedSkips, and on exec.LookPath outside this package: a test that
// lacks a tool must fail through NeedTool, naming the package.
func TestNoSilentSkips(t *testing.T) {
	root := moduleRoot(t)
	var skips []skipCall
	var lookPaths []token.Position
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(path, "_test.go") && !imports(f, "testing") {
			return nil
		}
		s, l := scanFile(fset, f)
		skips = append(skips, s...)
		if filepath.Dir(path) != mustAbs(t, ".") {
			lookPaths = append(lookPaths, l...)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the module's Go files under %s: %v", root, err)
	}
	if len(skips) == 0 {
		t.Fatalf("found no Skip call under %s: the scan is broken (testenv itself has some)", root)
	}
	for _, s := range skips {
		rel, _ := filepath.Rel(root, s.pos.Filename)
		rel = filepath.ToSlash(rel)
		where := rel + ":" + strconv.Itoa(s.pos.Line)
		s.reason = reasonFor(rel, s)
		if s.reason == "" {
			t.Errorf("%s: skip %q is not under testing.Short() nor an allowed reason: use testenv.NeedRoot/NeedTool (they fail, naming the package) or add a documented entry to allowedSkips", where, s.msg)
			continue
		}
		t.Logf("%s: %q (%s)", where, s.msg, s.reason)
	}
	for _, p := range lookPaths {
		rel, _ := filepath.Rel(root, p.Filename)
		t.Errorf("%s:%d: exec.LookPath in test code: use testenv.NeedTool, which fails and names the package", rel, p.Line)
	}
}

// scanFile returns the file's Skip calls, classified, and its
// exec.LookPath calls.
func scanFile(fset *token.FileSet, f *ast.File) (skips []skipCall, lookPaths []token.Position) {
	pkgs := importNames(f)
	var stack []ast.Node
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return false
		}
		stack = append(stack, n)
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, _ := sel.X.(*ast.Ident)
		if x != nil && x.Name == pkgs["os/exec"] && sel.Sel.Name == "LookPath" {
			lookPaths = append(lookPaths, fset.Position(call.Pos()))
		}
		switch sel.Sel.Name {
		case "Skip", "Skipf", "SkipNow":
		default:
			return true
		}
		if x != nil && isPackage(pkgs, x.Name) {
			return true // some package's Skip function, not testing's
		}
		skips = append(skips, skipCall{pos: fset.Position(call.Pos()), msg: firstArg(call), short: underShort(stack)})
		return true
	})
	return skips, lookPaths
}

// reasonFor is why s, in the file rel (slash-separated, from the module
// root), is allowed, or "".
func reasonFor(rel string, s skipCall) string {
	if s.short {
		return "-short"
	}
	for _, a := range allowedSkips {
		if rel == a.file && strings.HasPrefix(s.msg, a.prefix) {
			return a.why
		}
	}
	return ""
}

// underShort reports whether the innermost if around the last node of
// stack is `if testing.Short()` and the node is in its body.
func underShort(stack []ast.Node) bool {
	node := stack[len(stack)-1]
	for i := len(stack) - 2; i >= 0; i-- {
		ifs, ok := stack[i].(*ast.IfStmt)
		if !ok {
			continue
		}
		if node.Pos() < ifs.Body.Pos() || node.End() > ifs.Body.End() {
			return false // in the condition or the else branch
		}
		call, ok := ifs.Cond.(*ast.CallExpr)
		if !ok || len(call.Args) != 0 {
			return false
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		x, ok := sel.X.(*ast.Ident)
		return ok && x.Name == "testing" && sel.Sel.Name == "Short"
	}
	return false
}

// firstArg is the first argument's string value, or its source form.
func firstArg(call *ast.CallExpr) string {
	if len(call.Args) == 0 {
		return ""
	}
	if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
		if s, err := strconv.Unquote(lit.Value); err == nil {
			return s
		}
	}
	if id, ok := call.Args[0].(*ast.Ident); ok {
		return "<" + id.Name + ">"
	}
	return "<expression>"
}

// importNames maps each import path of f to the name it is used by.
func importNames(f *ast.File) map[string]string {
	out := map[string]string{}
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		name := filepath.Base(path)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		out[path] = name
	}
	return out
}

func isPackage(pkgs map[string]string, name string) bool {
	for _, n := range pkgs {
		if n == name {
			return true
		}
	}
	return false
}

func imports(f *ast.File, path string) bool {
	_, ok := importNames(f)[path]
	return ok
}

// moduleRoot is the directory holding go.mod, above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir := mustAbs(t, ".")
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

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
