package policies

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Explain evaluates the policy for the report and says why it fired or
// passed: rollback_when when h is nil, host_rollback_when for h otherwise
// (env.Host is set to h). reason is one sentence quoting the values that
// decided the outcome, such as `top_mean(hosts, 0.30) = 7.41 > 5`; for &&
// and || it names the deciding operands. values maps each quoted
// sub-expression, as written in the policy, to its value (booleans as 1 or
// 0). Explain runs programs compiled with the policy, compiles nothing, and
// is deterministic; it is slower than EvalFleet and EvalHost.
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
	_, reason, err := x.boolean(pr.explain)
	if err != nil {
		return fmt.Sprintf("%s could not be evaluated: %v", role, err), x.values
	}
	return reason, x.values
}

// explanation is Explain's plan for one boolean node of an expression,
// made when the policy is compiled: the operands that can decide it, each
// with its text as written and a compiled program for its value.
type explanation struct {
	// op is "!", "&&" or "||" (sub holds the operands), a comparison
	// operator (left and right hold them), or "" for any other boolean.
	op          string
	sub         []*explanation
	left, right *operand
	// value is the node itself: its text and its value.
	value *operand
}

// operand is one sub-expression Explain quotes.
type operand struct {
	text string
	// literal is a number written in the policy: quoted as written, not
	// recorded in values.
	literal bool
	prog    *vm.Program
}

// negated is the comparison that holds when op does not (for numbers that
// are not NaN).
var negated = map[string]string{"<": ">=", ">": "<=", "<=": ">", ">=": "<", "==": "!=", "!=": "=="}

// explainPlan walks the checked tree of an expression (text as the policy
// wrote it) the way Explain reads it, compiling each sub-expression it
// will evaluate with cfg, the configuration of the expression itself.
func explainPlan(tree *parser.Tree, cfg *conf.Config, text string) (*explanation, error) {
	sub := *cfg
	sub.Expect = reflect.Invalid // a sub-expression is any value, not the policy's boolean
	c := &planner{tree: tree, cfg: &sub, src: []rune(text)}
	return c.boolean(tree.Node)
}

type planner struct {
	tree *parser.Tree
	cfg  *conf.Config
	src  []rune
}

func (c *planner) boolean(n ast.Node) (*explanation, error) {
	e := &explanation{}
	switch n := n.(type) {
	case *ast.UnaryNode:
		if n.Operator == "!" || n.Operator == "not" {
			x, err := c.boolean(n.Node)
			if err != nil {
				return nil, err
			}
			e.op, e.sub = "!", []*explanation{x}
			return e, nil
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and", "||", "or":
			l, err := c.boolean(n.Left)
			if err != nil {
				return nil, err
			}
			r, err := c.boolean(n.Right)
			if err != nil {
				return nil, err
			}
			e.op, e.sub = "||", []*explanation{l, r}
			if n.Operator == "&&" || n.Operator == "and" {
				e.op = "&&"
			}
			return e, nil
		case "<", ">", "<=", ">=", "==", "!=":
			var err error
			if e.left, err = c.operand(n.Left); err != nil {
				return nil, err
			}
			if e.right, err = c.operand(n.Right); err != nil {
				return nil, err
			}
			e.op = n.Operator
		}
	}
	var err error
	e.value, err = c.operand(n)
	return e, err
}

// operand compiles sub-expression n on its own.
func (c *planner) operand(n ast.Node) (*operand, error) {
	prog, err := compiler.Compile(&parser.Tree{Node: n, Source: c.tree.Source}, c.cfg)
	if err != nil {
		return nil, err
	}
	o := &operand{text: sourceText(c.src, n), prog: prog}
	switch n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.ConstantNode:
		o.literal = true
	}
	return o, nil
}

type explainer struct {
	pr     *program
	env    *Env
	values map[string]float64
}

// boolean explains a boolean node: its value and the reason.
func (x *explainer) boolean(e *explanation) (bool, string, error) {
	switch e.op {
	case "!":
		v, reason, err := x.boolean(e.sub[0])
		return !v, reason, err
	case "&&", "||":
		and := e.op == "&&"
		l, lr, err := x.boolean(e.sub[0])
		if err != nil {
			return false, "", err
		}
		if l != and { // false && ..., true || ...: the left decides
			return l, lr, nil
		}
		r, rr, err := x.boolean(e.sub[1])
		if err != nil {
			return false, "", err
		}
		if r != and { // true && false, false || true: the right decides
			return r, rr, nil
		}
		return r, lr + " and " + rr, nil // both decide
	case "":
	default:
		if v, reason, err, ok := x.comparison(e); ok {
			return v, reason, err
		}
	}
	v, err := x.pr.run(e.value.prog, x.env)
	if err != nil {
		return false, "", err
	}
	b, ok := v.(bool)
	if !ok {
		return false, "", fmt.Errorf("%s is %T, not a boolean", e.value.text, v)
	}
	x.values[e.value.text] = boolValue(b)
	return b, fmt.Sprintf("%s is %t", e.value.text, b), nil
}

// comparison explains a comparison of two numbers; ok is false when the
// operands are not numbers.
func (x *explainer) comparison(e *explanation) (v bool, reason string, err error, ok bool) {
	lv, err := x.pr.run(e.left.prog, x.env)
	if err != nil {
		return false, "", err, true
	}
	rv, err := x.pr.run(e.right.prog, x.env)
	if err != nil {
		return false, "", err, true
	}
	l, lok := toFloat(lv)
	r, rok := toFloat(rv)
	if !lok || !rok {
		return false, "", nil, false
	}
	out, err := x.pr.run(e.value.prog, x.env)
	if err != nil {
		return false, "", err, true
	}
	v, _ = out.(bool)
	op := e.op
	if !v && !math.IsNaN(l) && !math.IsNaN(r) {
		op = negated[op]
	} else if !v {
		op = "so not " + op
	}
	return v, fmt.Sprintf("%s %s %s", x.operand(e.left, l), op, x.operand(e.right, r)), nil, true
}

// operand quotes a compared number: a literal as written, anything else
// as `text = value`, recorded in values.
func (x *explainer) operand(o *operand, v float64) string {
	if o.literal {
		return o.text
	}
	x.values[o.text] = v
	return o.text + " = " + formatNumber(v)
}

// sourceText returns the text of node n as the policy wrote it (src): the
// span of its tokens, extended over the closing brackets it opened.
func sourceText(src []rune, n ast.Node) string {
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
