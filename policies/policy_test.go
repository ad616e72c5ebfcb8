package policies

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestPolicyFiles")

// testMetrics are the query names the test policies may reference.
var testMetrics = CompileOptions{Metrics: []string{"latency_p95", "error_rate", "cpu"}}

// loadPolicies parses and compiles a policy file the way the runner does,
// returning the compiled policies and every problem.
func loadPolicies(file string, data []byte, opts CompileOptions) ([]*Policy, ErrorList) {
	srcs, err := ParseFile(file, data)
	var errs ErrorList
	if err != nil {
		errs = append(errs, err.(ErrorList)...)
	}
	var out []*Policy
	for _, s := range srcs {
		p, err := Compile(s, opts)
		if err != nil {
			errs = append(errs, err.(ErrorList)...)
			continue
		}
		out = append(out, p)
	}
	return out, errs
}

// TestPolicyFiles loads every file of testdata/policies and compares what
// it reports with the file's .golden: the errors (file:line:col: message),
// or the policies it holds. Run with -update to rewrite the goldens.
func TestPolicyFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/policies/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test policies: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			pols, errs := loadPolicies(name, data, testMetrics)
			var got strings.Builder
			for _, e := range errs {
				var pe *PosError
				if !errors.As(e, &pe) {
					t.Errorf("error %v is a %T, not a *PosError", e, e)
				}
				got.WriteString(e.Error() + "\n")
			}
			for _, p := range pols {
				got.WriteString("ok " + p.PolicyName() + " fleet=" + yesNo(p.HasFleet()) + " host=" + yesNo(p.HasHost()) +
					" on_no_data=" + p.OnNoData + " metrics=" + usesText(p.UsesMetrics()) + "\n")
			}
			if strings.HasPrefix(name, "good") && len(errs) > 0 {
				t.Errorf("good file reports errors:\n%s", got.String())
			}
			if strings.HasPrefix(name, "bad") && len(errs) == 0 {
				t.Errorf("bad file reports no error")
			}
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got.String() != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got.String(), want)
			}
		})
	}
}

func usesText(m []string) string {
	if m == nil {
		return "all"
	}
	return "[" + strings.Join(m, ",") + "]"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// TestTypoPosition: a misspelt field is reported at the expression's line
// and the typo's column, for every way YAML can hold the expression.
func TestTypoPosition(t *testing.T) {
	tests := []struct {
		name, yaml string
		line, col  int
	}{
		{"plain", "name: p\nrollback_when: fraction(hosts, .degradd) >= 0.3\n", 2, 33},
		{"single-quoted", "name: p\nrollback_when: 'fraction(hosts, .degradd) >= 0.3'\n", 2, 34},
		{"double-quoted", "name: p\nrollback_when: \"fraction(hosts, .degradd) >= 0.3\"\n", 2, 34},
		{"literal", "name: p\nrollback_when: |\n  fraction(hosts, .score > 1) >= 0.3\n    || fraction(hosts, .degradd) > 0\n", 4, 25},
		{"list", "- name: p\n  host_rollback_when: 'host.degradd'\n", 2, 29},
		{"metric", "name: p\nhost_rollback_when: 'host.metrics.eror_rate.z > 1'\n", 2, 35},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := loadPolicies("p.yaml", []byte(tt.yaml), testMetrics)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			var pe *PosError
			if !errors.As(errs[0], &pe) {
				t.Fatalf("error is %T", errs[0])
			}
			if pe.Line != tt.line || pe.Col != tt.col {
				t.Errorf("error at %d:%d, want %d:%d: %v", pe.Line, pe.Col, tt.line, tt.col, pe)
			}
			lines := strings.Split(tt.yaml, "\n")
			if at := lines[pe.Line-1][pe.Col-1:]; !strings.HasPrefix(at, "degradd") && !strings.HasPrefix(at, "eror_rate") {
				t.Errorf("column points at %q, not at the typo", at)
			}
		})
	}
}

// FuzzParsePolicy: ParseFile and Compile never panic, and every problem
// they report is a *PosError.
func FuzzParsePolicy(f *testing.F) {
	files, _ := filepath.Glob("testdata/policies/*.yaml")
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("name: x\nrollback_when: '" + strings.Repeat("(", 300) + "'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, errs := loadPolicies("fuzz.yaml", data, testMetrics)
		for _, e := range errs {
			var pe *PosError
			if !errors.As(e, &pe) {
				t.Fatalf("error %v is a %T, not a *PosError", e, e)
			}
		}
	})
}
