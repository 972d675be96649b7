package authgate

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// layers are the package's files in the order a request meets them, top
// first: each may use only the files after it. module.go's doc comment
// shows the same map; TestLayout keeps both true.
var layers = []string{
	"caddyfile.go", "presets.go",
	"handler.go", "stepup.go", "module.go",
	"logout.go", "login.go", "endpoints.go", "health.go", "backchannel.go", "frontchannel.go",
	"site.go", "forward.go", "pages.go", "bearer.go",
	"gateway.go", "assertion.go", "assertkeys.go", "revalidate.go", "refresh.go", "authctx.go",
	"session.go", "cache.go", "store.go", "cookieread.go", "cookie.go", "sessiondata.go", "fastjson.go",
	"identity.go", "provider.go", "issuer.go", "jwks.go", "par.go", "apiclaims.go", "clientauth.go", "tokens.go", "introspect.go", "transport.go", "answers.go", "claimchecks.go",
	"dialect.go", "rules.go", "claims.go", "claimpath.go", "headerlist.go", "glob.go", "redirect.go", "metrics.go", "expiring.go", "common.go",
}

// TestLayout: no file uses a file above it (a tie is any use of a name
// declared in another file: a type, function, variable, constant, field
// or method), no file declares methods of a type declared in another
// file, every file has its place in layers, and the package map in
// module.go names them in that order.
func TestLayout(t *testing.T) {
	fset, files, info, pkg := layoutTypeCheck(t)
	rank := map[string]int{}
	for i, f := range layers {
		rank[f] = i
	}
	for name := range files {
		if _, ok := rank[name]; !ok {
			t.Errorf("%s has no place in layers (layout_test.go) nor in the package map (module.go)", name)
		}
	}
	for id, obj := range info.Uses {
		if obj == nil || obj.Pkg() != pkg || !obj.Pos().IsValid() {
			continue
		}
		if v, ok := obj.(*types.Var); ok && !v.IsField() && v.Parent() != pkg.Scope() {
			continue // a local variable
		}
		from := filepath.Base(fset.Position(id.Pos()).Filename)
		to := filepath.Base(fset.Position(obj.Pos()).Filename)
		if rank[to] < rank[from] {
			t.Errorf("%s uses %s of %s, a file above it: %s", from, obj.Name(), to, fset.Position(id.Pos()))
		}
	}
	for name, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv == nil {
				continue
			}
			recv := fd.Recv.List[0].Type
			if s, ok := recv.(*ast.StarExpr); ok {
				recv = s.X
			}
			if ix, ok := recv.(*ast.IndexExpr); ok {
				recv = ix.X
			}
			if ix, ok := recv.(*ast.IndexListExpr); ok {
				recv = ix.X // a type with several type parameters
			}
			typ := pkg.Scope().Lookup(recv.(*ast.Ident).Name)
			if in := filepath.Base(fset.Position(typ.Pos()).Filename); in != name {
				t.Errorf("%s declares %s.%s; the type is declared in %s", name, typ.Name(), fd.Name.Name, in)
			}
		}
	}
	// The package map: module.go's doc comment names the files in order.
	doc := files["module.go"].Doc.Text()
	at := 0
	for _, f := range layers {
		i := strings.Index(doc[at:], f)
		if i < 0 {
			t.Errorf("the package map in module.go's doc comment does not name %s after the files above it", f)
			continue
		}
		at += i + len(f)
	}
}

// layoutTypeCheck type-checks the package's non-test files, with its
// dependencies from the build cache (go list -export).
func layoutTypeCheck(t *testing.T) (*token.FileSet, map[string]*ast.File, *types.Info, *types.Package) {
	t.Helper()
	out, err := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}} {{.Export}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -export: %v", err)
	}
	exports := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 {
			exports[f[0]] = f[1]
		}
	}
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{}
	var list []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = f
		list = append(list, f)
	}
	slices.SortFunc(list, func(a, b *ast.File) int {
		return strings.Compare(fset.Position(a.Pos()).Filename, fset.Position(b.Pos()).Filename)
	})
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) { return os.Open(exports[path]) })
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	pkg, err := (&types.Config{Importer: imp}).Check("authgate", fset, list, info)
	if err != nil {
		t.Fatalf("type-checking the package: %v", err)
	}
	return fset, files, info, pkg
}
