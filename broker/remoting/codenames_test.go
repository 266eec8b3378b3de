package remoting

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// codeConstants reads codes.go and returns its int16 constants whose names start with
// prefix, by value, so a code added there without a name here fails this test.
func codeConstants(t *testing.T, prefix string) map[string]int16 {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int16{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.INT {
					continue
				}
				v, err := strconv.ParseInt(lit.Value, 10, 16)
				if err != nil {
					t.Fatalf("%s = %s: %v", name.Name, lit.Value, err)
				}
				out[name.Name] = int16(v)
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d %s constants in codes.go; the parser missed them", len(out), prefix)
	}
	return out
}

var labelRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func TestEveryRequestCodeHasAName(t *testing.T) {
	for name, code := range codeConstants(t, "Code") {
		n := RequestName(code)
		if n == RequestOther {
			t.Errorf("%s (%d) has no name in requestNames (codenames.go); add one", name, code)
		}
		if !labelRE.MatchString(n) {
			t.Errorf("%s: name %q is not a lower-case label value", name, n)
		}
	}
	if got := RequestName(9999); got != RequestOther {
		t.Errorf("unknown code named %q, want %q", got, RequestOther)
	}
	if RequestName(CodeSendMessage) != "send" || RequestName(CodeSendMessageV2) != "send" || RequestName(CodePullMessage) != "pull" {
		t.Error("send and pull are not named send and pull")
	}
}

func TestEveryResponseCodeHasAName(t *testing.T) {
	seen := map[string]string{}
	for name, code := range codeConstants(t, "Resp") {
		n := ResponseName(code)
		if n == ResultError {
			t.Errorf("%s (%d) has no name in responseNames (codenames.go); add one", name, code)
		}
		if !labelRE.MatchString(n) {
			t.Errorf("%s: name %q is not a lower-case label value", name, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share the result name %q", name, other, n)
		}
		seen[n] = name
	}
	if ResponseName(RespSuccess) != ResultOK || ResponseName(RespPullNotFound) != "pull_not_found" || ResponseName(-7) != ResultError {
		t.Error("ok, pull_not_found or the unknown class is misnamed")
	}
}
