package policies

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// Explain evaluates the policy for the report and says why it fired or
// passed: rollback_when when h is nil, host_rollback_when for h otherwise
// (env.Host is set to h). reason is one sentence quoting the values that
// decided the outcome, such as `top_mean(hosts, 0.30) = 7.41 > 5`; for &&
// and || it names the deciding operands. values maps each quoted
// sub-expression, as written in the policy, to its value (booleans as 1 or
// 0). Explain is slower than EvalFleet and EvalHost, and deterministic.
func (p *Policy) Explain(env *Env, h *Host) (reason string, values map[string]float64) {
	pr, role := p.fleet, roleFleet
	env.Host = nil
	if h != nil {
		pr, role = p.host, roleHost
		env.Host = h
	}
	if pr == nil {
		return fmt.Sprintf("policy %q has no %s", p.Name, role), map[string]float64{}
	}
	x := &explainer{pr: pr, env: env, values: map[string]float64{}}
	_, reason, err := x.boolean(pr.tree)
	if err != nil {
		return fmt.Sprintf("%s could not be evaluated: %v", role, err), x.values
	}
	return reason, x.values
}

type explainer struct {
	pr     *program
	env    *Env
	values map[string]float64
}

// boolean explains a boolean node: its value and the reason.
func (x *explainer) boolean(n ast.Node) (bool, string, error) {
	switch n := n.(type) {
	case *ast.UnaryNode:
		if n.Operator == "!" || n.Operator == "not" {
			v, reason, err := x.boolean(n.Node)
			return !v, reason, err
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and", "||", "or":
			and := n.Operator == "&&" || n.Operator == "and"
			l, lr, err := x.boolean(n.Left)
			if err != nil {
				return false, "", err
			}
			if l != and { // false && ..., true || ...: the left decides
				return l, lr, nil
			}
			r, rr, err := x.boolean(n.Right)
			if err != nil {
				return false, "", err
			}
			if r != and { // true && false, false || true: the right decides
				return r, rr, nil
			}
			return r, lr + " and " + rr, nil // both decide
		case "<", ">", "<=", ">=", "==", "!=":
			if v, reason, err, ok := x.comparison(n); ok {
				return v, reason, err
			}
		}
	}
	v, err := x.eval(n)
	if err != nil {
		return false, "", err
	}
	b, ok := v.(bool)
	if !ok {
		return false, "", fmt.Errorf("%s is %T, not a boolean", x.text(n), v)
	}
	text := x.text(n)
	x.values[text] = boolValue(b)
	return b, fmt.Sprintf("%s is %t", text, b), nil
}

// negated is the comparison that holds when op does not (for numbers that
// are not NaN).
var negated = map[string]string{"<": ">=", ">": "<=", "<=": ">", ">=": "<", "==": "!=", "!=": "=="}

// comparison explains a comparison of two numbers; ok is false when the
// operands are not numbers.
func (x *explainer) comparison(n *ast.BinaryNode) (v bool, reason string, err error, ok bool) {
	lv, err := x.eval(n.Left)
	if err != nil {
		return false, "", err, true
	}
	rv, err := x.eval(n.Right)
	if err != nil {
		return false, "", err, true
	}
	l, lok := toFloat(lv)
	r, rok := toFloat(rv)
	if !lok || !rok {
		return false, "", nil, false
	}
	out, err := x.eval(n)
	if err != nil {
		return false, "", err, true
	}
	v, _ = out.(bool)
	op := n.Operator
	if !v && !math.IsNaN(l) && !math.IsNaN(r) {
		op = negated[op]
	} else if !v {
		op = "so not " + op
	}
	return v, fmt.Sprintf("%s %s %s", x.operand(n.Left, l), op, x.operand(n.Right, r)), nil, true
}

// operand quotes a compared number: a literal as written, anything else
// as `text = value`, recorded in values.
func (x *explainer) operand(n ast.Node, v float64) string {
	text := x.text(n)
	switch n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.ConstantNode:
		return text
	}
	x.values[text] = v
	return text + " = " + formatNumber(v)
}

// eval evaluates one sub-expression: on the fast path when it is in the
// subset, with expr otherwise (outside predicates only, which is where
// Explain looks).
func (x *explainer) eval(n ast.Node) (any, error) {
	c := &fastCompiler{fractions: x.pr.fractions, pr: x.pr}
	f := &frame{env: x.env}
	if fn, err := c.boolean(n); err == nil {
		f.scope = make([]*Host, c.maxDepth)
		v := fn(f)
		return v, f.err
	}
	c = &fastCompiler{fractions: x.pr.fractions, pr: x.pr}
	if fn, err := c.number(n); err == nil {
		f.scope = make([]*Host, c.maxDepth)
		if fn.i != nil {
			v := fn.i(f)
			return v, f.err
		}
		v := fn.f(f)
		return v, f.err
	}
	prog, err := expr.Compile(n.String(), expr.Env(Env{}),
		expr.Function("top_mean", x.pr.topMeanVM, new(func([]*Host, float64) float64)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.text(n), err)
	}
	return expr.Run(prog, x.env)
}

// text returns the source text of node n as the policy wrote it: the span
// of its tokens, extended over the closing brackets it opened.
func (x *explainer) text(n ast.Node) string {
	src := []rune(x.pr.expr.Text)
	from, to := len(src), 0
	walk(n, func(m ast.Node) {
		loc := m.Location()
		if loc.From < loc.To && loc.To <= len(src) {
			from, to = min(from, loc.From), max(to, loc.To)
		}
	})
	if from >= to {
		return n.String()
	}
	open := 0
	for _, r := range src[from:to] {
		switch r {
		case '(', '[', '{':
			open++
		case ')', ']', '}':
			open--
		}
	}
	for to < len(src) && open > 0 {
		switch src[to] {
		case ')', ']', '}':
			open--
		case ' ', '\t', '\n', '\r':
		default:
			open = 0 // not a closing bracket: stop here
			continue
		}
		to++
	}
	return strings.Join(strings.Fields(string(src[from:to])), " ")
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	}
	return 0, false
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// formatNumber prints a value for a reason: integers exactly, others with
// four significant digits.
func formatNumber(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case math.Abs(v) >= 1000:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
