package msg

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/language"
)

// keys finds every message key in the station's code: the string literal given first to a
// call of Tr, Trf (the key is then the second argument, after the writer) or usagef, and
// the string constants passed to them. A key that is a variable is found where its value is
// written.
func keys(t *testing.T) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	fset := token.NewFileSet()
	keyNames := map[string]bool{}        // identifiers passed as keys
	consts := map[string]*ast.BasicLit{} // string constants by name
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "msg") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		add := func(e ast.Expr) {
			if id, ok := e.(*ast.Ident); ok {
				keyNames[id.Name] = true // a constant: its value is the key
				return
			}
			lit, ok := e.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return // a key passed on (an error's key): found where it is written
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			found[s] = append(found[s], fset.Position(e.Pos()).String())
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				var name string
				switch fn := n.Fun.(type) {
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				case *ast.Ident:
					name = fn.Name
				}
				switch {
				case (name == "Tr" || name == "usagef") && len(n.Args) > 0:
					add(n.Args[0])
				case name == "Trf" && len(n.Args) > 1:
					add(n.Args[1])
				}
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if i >= len(n.Values) {
						break
					}
					if lit, ok := n.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						consts[id.Name] = lit
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range keyNames {
		if lit, ok := consts[name]; ok {
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			found[s] = append(found[s], fset.Position(lit.Pos()).String())
		}
	}
	return found
}

var verb = regexp.MustCompile(`%[-+# 0]*[0-9]*(?:\.[0-9]+)?[a-zA-Z%]`)

// TestCatalog: every key has a Chinese entry that takes the same verbs in the same order,
// and every entry is a key still in use.
func TestCatalog(t *testing.T) {
	used := keys(t)
	if len(used) < 20 {
		t.Fatalf("found only %d message keys: the scan is broken: %v", len(used), used)
	}
	for k, where := range used {
		zh, ok := zhHans[k]
		if !ok {
			t.Errorf("%s: no Chinese for %q", where[0], k)
			continue
		}
		if kv, zv := verb.FindAllString(k, -1), verb.FindAllString(zh, -1); !slices.Equal(kv, zv) {
			t.Errorf("%s: %q takes %v, its Chinese %q takes %v", where[0], k, kv, zh, zv)
		}
		if strings.HasSuffix(k, "\n") != strings.HasSuffix(zh, "\n") {
			t.Errorf("%q and its Chinese end differently (a new line)", k)
		}
	}
	for k := range zhHans {
		if _, ok := used[k]; !ok {
			t.Errorf("Chinese for %q, a key no code uses", k)
		}
	}
}

func TestPrinter(t *testing.T) {
	zh, en := New(language.SimplifiedChinese), New(language.English)
	const key = "%d files: %d stored, %d already stored, %d conflicts, %d failed"
	if got, want := en.Tr(key, 3, 1, 1, 0, 1), "3 files: 1 stored, 1 already stored, 0 conflicts, 1 failed"; got != want {
		t.Errorf("English: %q, want %q", got, want)
	}
	if got := zh.Tr(key, 3, 1, 1, 0, 1); !strings.Contains(got, "3 个文件") {
		t.Errorf("Chinese: %q", got)
	}
	if got := zh.Tr("no such key %d", 1); got != "no such key 1" {
		t.Errorf("a key without an entry: %q, want the key itself", got)
	}
}

func TestPick(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	zh, en := language.SimplifiedChinese, language.English
	for i, tc := range []struct {
		flag string
		env  func(string) string
		want language.Tag
	}{
		{"", env(), zh},
		{"en", env(), en},
		{"zh-CN", env("LANG", "en_US.UTF-8"), zh},
		{"", env("LANG", "en_US.UTF-8"), en},
		{"", env("LANG", "zh_CN.GB18030"), zh},
		{"", env("LANG", "zh_TW.UTF-8"), zh},
		{"", env("LANG", "C"), zh},
		{"", env("LC_ALL", "C.UTF-8", "LANG", "en_US.UTF-8"), zh}, // the first set decides
		{"", env("LC_MESSAGES", "en_GB.UTF-8", "LANG", "zh_CN.UTF-8"), en},
		{"", env("SANPING_LANG", "en", "LANG", "zh_CN.UTF-8"), en},
		{"", env("LANG", "za_CN.UTF-8"), zh}, // Zhuang: Chinese is the second language
	} {
		got, err := Pick(tc.flag, tc.env)
		if err != nil || got != tc.want {
			t.Errorf("case %d: Pick(%q): %v, %v; want %v", i, tc.flag, got, err, tc.want)
		}
	}
	if _, err := Pick("klingon-xx-yy-zz", env()); err == nil {
		t.Error("an unknown -lang was accepted")
	}
	if _, err := Pick("", env("SANPING_LANG", "nonsense!")); err == nil {
		t.Error("an unknown SANPING_LANG was accepted")
	}
}
