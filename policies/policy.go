package policies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// On-no-data behaviours.
const (
	NoDataFail   = "fail"
	NoDataHold   = "hold"
	NoDataIgnore = "ignore"
)

// Pos is a place in a file (1-based line and column).
type Pos struct {
	Line, Col int
}

// Expr is one expression as written in a file, with where its text starts
// and the YAML scalar style, so compile errors point into the file.
type Expr struct {
	Text string
	// Pos is where the scalar node starts in the file.
	Pos Pos
	// Style is the yaml.Node style of the scalar (plain, quoted, literal,
	// folded), needed to map a column inside the expression to the file.
	Style int
	// Indent is, for a literal or folded block scalar, the 1-based column
	// where its content lines start (0 when unknown: columns are then
	// counted from Pos.Col). NewExpr fills it in from the file's bytes.
	Indent int
}

// Source is a policy as written, before compilation: from a policy file or
// inline in the spec.
type Source struct {
	Name             string
	File             string
	Pos              Pos // where the policy starts
	RollbackWhen     Expr
	HostRollbackWhen Expr
	OnNoData         string
}

// Policy is a compiled policy. A Policy keeps scratch state for its
// evaluations, so one Policy must not be evaluated concurrently.
type Policy struct {
	Source

	fleet *program // rollback_when, nil when absent
	host  *program // host_rollback_when, nil when absent
	// uses is UsesMetrics' answer, computed once at compile time.
	uses []string
	// Warnings are what compiles but is surely a mistake: an expression
	// whose value never changes (always true: the policy fires on the
	// first tick; always false: never). They never fail a load.
	Warnings []*PosError
}

// CompileOptions are what compilation checks references against.
type CompileOptions struct {
	// Metrics are the query names; host.metrics.<name> must be one of them.
	Metrics []string
}

// PolicyName returns the policy's name.
func (p *Policy) PolicyName() string { return p.Name }

// HasFleet reports whether the policy has a rollback_when expression.
func (p *Policy) HasFleet() bool { return p.fleet != nil }

// HasHost reports whether the policy has a host_rollback_when expression.
func (p *Policy) HasHost() bool { return p.host != nil }

// EvalFleet evaluates rollback_when against env; true means roll back. It
// returns false and no error when the policy has no rollback_when.
func (p *Policy) EvalFleet(env *Env) (bool, error) {
	if p.fleet == nil {
		return false, nil
	}
	env.Host = nil
	v, err := p.fleet.eval(env)
	if err != nil {
		return false, fmt.Errorf("policy %q: rollback_when: %w", p.Name, err)
	}
	return v, nil
}

// EvalHost evaluates host_rollback_when for host h (env.Host is set to h
// for the evaluation and left there); true means roll back that host. It
// returns false and no error when the policy has no host_rollback_when.
func (p *Policy) EvalHost(env *Env, h *Host) (bool, error) {
	if p.host == nil {
		return false, nil
	}
	env.Host = h
	v, err := p.host.eval(env)
	if err != nil {
		return false, fmt.Errorf("policy %q: host_rollback_when for host %s: %w", p.Name, hostName(h), err)
	}
	return v, nil
}

// UsesMetrics returns the sorted query names the policy reads through
// .metrics.<name>, or nil when it reads host-level aggregates (score,
// degraded, fleet scores, top_mean) or indexes metrics by a computed key,
// so that it depends on every metric. A policy reading no metric at all
// returns an empty, non-nil slice.
func (p *Policy) UsesMetrics() []string { return p.uses }

func hostName(h *Host) string {
	if h == nil {
		return "<nil>"
	}
	return h.Name
}

// policyKeys are the keys a policy mapping may hold, in the order errors
// list them.
var policyKeys = []string{"name", "rollback_when", "host_rollback_when", "on_no_data"}

// ParseFile reads a policy file (one policy or a list) into sources,
// reporting every problem with file:line:col. The error, when not nil, is
// an ErrorList of *PosError.
func ParseFile(file string, data []byte) ([]Source, error) {
	if pe := OddLineBreak(file, data); pe != nil {
		return nil, ErrorList{pe}
	}
	var errs ErrorList
	var out []Source
	dec := yaml.NewDecoder(bytes.NewReader(data))
	docs := 0
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, YAMLError(file, "invalid YAML", err, data))
			break
		}
		docs++
		root := &doc
		if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
			root = root.Content[0]
		}
		root = ResolveAlias(root)
		switch root.Kind {
		case yaml.MappingNode:
			if src, ok := parsePolicy(file, data, root, &errs); ok {
				out = append(out, src)
			}
		case yaml.SequenceNode:
			for _, item := range root.Content {
				item = ResolveAlias(item)
				if item.Kind != yaml.MappingNode {
					errs = append(errs, posErr(file, item, "a policy must be a mapping (name, rollback_when, ...), not %s", DescribeNode(item)))
					continue
				}
				if src, ok := parsePolicy(file, data, item, &errs); ok {
					out = append(out, src)
				}
			}
		default:
			if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
				continue // an empty document
			}
			errs = append(errs, posErr(file, root, "a policy file holds a policy (mapping) or a list of policies, not %s", DescribeNode(root)))
		}
	}
	if len(errs) == 0 && len(out) == 0 {
		errs = append(errs, &PosError{File: file, Line: 1, Col: 1, Msg: "no policy in file"})
	}
	errs = append(errs, duplicateNames(out)...)
	if len(errs) > 0 {
		return out, SortErrors(errs)
	}
	return out, nil
}

func parsePolicy(file string, data []byte, m *yaml.Node, errs *ErrorList) (Source, bool) {
	src := Source{File: file, Pos: Pos{Line: m.Line, Col: m.Column}, OnNoData: NoDataFail}
	ok := true
	bad := func(n *yaml.Node, format string, args ...any) {
		*errs = append(*errs, posErr(file, n, format, args...))
		ok = false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], ResolveAlias(m.Content[i+1])
		if seen[k.Value] {
			bad(k, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "name":
			if s, good := stringValue(v); good && s != "" {
				src.Name = s
			} else if good {
				bad(v, "name must not be empty")
			} else {
				bad(v, "name must be a string, not %s", DescribeNode(v))
			}
		case "rollback_when", "host_rollback_when":
			s, good := stringValue(v)
			switch {
			case !good:
				bad(v, "%s must be a string holding an expression, not %s (quote it)", k.Value, DescribeNode(v))
			case strings.TrimSpace(s) == "":
				bad(v, "%s must not be empty", k.Value)
			case k.Value == "rollback_when":
				src.RollbackWhen = NewExpr(v, data)
			default:
				src.HostRollbackWhen = NewExpr(v, data)
			}
		case "on_no_data":
			s, good := stringValue(v)
			switch {
			case !good:
				bad(v, "on_no_data must be a string, not %s", DescribeNode(v))
			case s != NoDataFail && s != NoDataHold && s != NoDataIgnore:
				bad(v, "on_no_data is %q; want fail, hold or ignore", s)
			default:
				src.OnNoData = s
			}
		default:
			bad(k, "unknown key %q in policy (want %s)", k.Value, strings.Join(policyKeys, ", "))
		}
	}
	if !seen["name"] {
		bad(m, "policy has no name")
	}
	if !seen["rollback_when"] && !seen["host_rollback_when"] {
		what := "policy"
		if src.Name != "" {
			what = fmt.Sprintf("policy %q", src.Name)
		}
		bad(m, "%s has neither rollback_when nor host_rollback_when", what)
	}
	return src, ok
}

func duplicateNames(srcs []Source) ErrorList {
	var errs ErrorList
	first := map[string]Source{}
	for _, s := range srcs {
		if prev, dup := first[s.Name]; dup {
			errs = append(errs, &PosError{File: s.File, Line: s.Pos.Line, Col: s.Pos.Col,
				Msg: fmt.Sprintf("duplicate policy name %q (first at line %d)", s.Name, prev.Pos.Line)})
			continue
		}
		first[s.Name] = s
	}
	return errs
}

// NewExpr returns the expression held by scalar node n of a YAML file
// whose bytes are data, with what compile errors need to point into the
// file. data may be nil; block scalars' columns are then approximate.
func NewExpr(n *yaml.Node, data []byte) Expr {
	e := Expr{Text: n.Value, Pos: Pos{Line: n.Line, Col: n.Column}, Style: int(n.Style)}
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		e.Indent = blockIndent(data, n.Line)
	}
	return e
}

// blockIndent returns the 1-based column of the first non-blank line after
// line (1-based) in data, or 0 when there is none.
func blockIndent(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	for i := line; i < len(lines); i++ { // lines[line] is the line after `line`
		l := bytes.TrimRight(lines[i], "\r")
		t := bytes.TrimLeft(l, " ")
		if len(t) == 0 {
			continue
		}
		return len(l) - len(t) + 1
	}
	return 0
}

// stringValue returns a scalar string's value; numbers, booleans and null
// are not strings.
func stringValue(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", false
	}
	return n.Value, true
}

func posErr(file string, n *yaml.Node, format string, args ...any) *PosError {
	return &PosError{File: file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)}
}
