package policies

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// MaxExprNodes bounds the size of one policy expression (expr.MaxNodes):
// a policy is a few comparisons, not a program.
const MaxExprNodes = 500

// Expression roles, used in messages and to decide whether host is set.
const (
	roleFleet = "rollback_when"
	roleHost  = "host_rollback_when"
)

// program is one compiled expression of a policy.
type program struct {
	expr Expr
	role string
	// text is the expression as expr parsed it (fraction renamed).
	text string
	// tree is expr's type-checked AST (fraction rewritten), shared by the
	// VM program, the fast path and Explain.
	tree ast.Node
	// fractions are the rewritten fraction calls in tree.
	fractions map[ast.Node]*fractionCall
	prog      *vm.Program
	machine   vm.VM
	// fast is the typed closure evaluation of tree, nil when tree uses
	// something outside the fast path's subset; frame is its reusable
	// state.
	fast  boolFn
	frame frame
	// scratch is top_mean's buffer (shared by fast path and VM).
	scratch []float64
}

// Compile compiles src once, against Env: every expression is parsed and
// type-checked by expr, its metric references checked against
// opts.Metrics, and compiled for evaluation. The error, when not nil, is an
// ErrorList of *PosError naming the place in src.File.
func Compile(src Source, opts CompileOptions) (*Policy, error) {
	var errs ErrorList
	p := &Policy{Source: src}
	if p.OnNoData == "" {
		p.OnNoData = NoDataFail
	}
	at := &PosError{File: src.File, Line: src.Pos.Line, Col: src.Pos.Col}
	if src.Name == "" {
		e := *at
		e.Msg = "policy has no name"
		errs = append(errs, &e)
	}
	switch p.OnNoData {
	case NoDataFail, NoDataHold, NoDataIgnore:
	default:
		e := *at
		e.Msg = fmt.Sprintf("on_no_data is %q; want fail, hold or ignore", p.OnNoData)
		errs = append(errs, &e)
	}
	if src.RollbackWhen.Text == "" && src.HostRollbackWhen.Text == "" {
		e := *at
		e.Msg = fmt.Sprintf("policy %q has neither rollback_when nor host_rollback_when", src.Name)
		errs = append(errs, &e)
	}
	var err error
	if src.RollbackWhen.Text != "" {
		if p.fleet, err = compileExpr(src.File, src.RollbackWhen, roleFleet, opts); err != nil {
			errs = append(errs, err.(ErrorList)...)
		}
	}
	if src.HostRollbackWhen.Text != "" {
		if p.host, err = compileExpr(src.File, src.HostRollbackWhen, roleHost, opts); err != nil {
			errs = append(errs, err.(ErrorList)...)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p.uses = usedMetrics(p.fleet, p.host)
	return p, nil
}

// compileExpr parses, checks and compiles one expression. Errors are an
// ErrorList.
func compileExpr(fileName string, e Expr, role string, opts CompileOptions) (*program, error) {
	pr := &program{expr: e, role: role}
	text, at := substituteFraction(e.Text)
	pr.text = text
	patcher := &fractionPatcher{at: at}

	cfg := conf.CreateNew()
	for _, op := range []expr.Option{
		expr.Env(Env{}),
		expr.AsBool(),
		expr.MaxNodes(MaxExprNodes),
		expr.Function("top_mean", pr.topMeanVM, new(func([]*Host, float64) float64)),
		expr.Patch(patcher),
	} {
		op(cfg)
	}
	cfg.Check()

	fail := func(line, col int, msg string) error {
		if at != nil {
			msg = strings.ReplaceAll(msg, fractionAlias, "fraction")
		}
		fl, fc := e.filePos(line, col)
		return ErrorList{&PosError{File: fileName, Line: fl, Col: fc, Msg: fmt.Sprintf("%s: %s", role, friendlier(msg))}}
	}

	tree, err := checker.ParseCheck(text, cfg)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			return nil, fail(fe.Line, fe.Column, fe.Message)
		}
		// expr reports the result type without a position: the whole
		// expression is at fault.
		return nil, fail(1, 0, err.Error()+" (a policy must be a condition, e.g. `x > 5`)")
	}
	pr.tree = tree.Node
	pr.fractions = patcher.calls

	if errs := checkRefs(fileName, e, role, pr.tree, opts, text); len(errs) > 0 {
		return nil, errs
	}

	prog, err := compiler.Compile(tree, cfg)
	if err != nil {
		return nil, fail(1, 0, err.Error())
	}
	pr.prog = prog

	fc := &fastCompiler{fractions: pr.fractions, pr: pr}
	if fn, err := fc.boolean(pr.tree); err == nil {
		pr.fast = fn
		pr.frame.scope = make([]*Host, fc.maxDepth)
	}
	return pr, nil
}

// envTypes are the environment's struct types, by the name expr's
// messages give them, and how a policy writer knows them.
var envTypes = []struct {
	goName, name string
	t            reflect.Type
}{
	{"policies.Host", "a host", reflect.TypeOf(Host{})},
	{"policies.Metric", "a metric", reflect.TypeOf(Metric{})},
	{"policies.Fleet", "fleet", reflect.TypeOf(Fleet{})},
	{"policies.Wave", "wave", reflect.TypeOf(Wave{})},
}

// friendlier rewrites an expr message in the policy writer's terms: "type
// policies.Host has no field degradd" becomes "a host has no field degradd
// (fields: name, wave, ...)".
func friendlier(msg string) string {
	msg = strings.TrimSpace(msg)
	for _, et := range envTypes {
		prefix := "type " + et.goName + " has no field "
		if !strings.HasPrefix(msg, prefix) {
			continue
		}
		var fields []string
		for i := range et.t.NumField() {
			fields = append(fields, et.t.Field(i).Tag.Get("expr"))
		}
		return fmt.Sprintf("%s has no field %s (fields: %s)", et.name, strings.TrimPrefix(msg, prefix), strings.Join(fields, ", "))
	}
	return msg
}

// filePos maps a position inside the expression (1-based line, 0-based
// rune column, as expr reports them) to the file's 1-based line and column.
func (e Expr) filePos(line, col int) (int, int) {
	const (
		doubleQuoted = 2  // yaml.DoubleQuotedStyle
		singleQuoted = 4  // yaml.SingleQuotedStyle
		literal      = 8  // yaml.LiteralStyle
		folded       = 16 // yaml.FoldedStyle
	)
	if line < 1 {
		line = 1
	}
	switch {
	case e.Style&(literal|folded) != 0:
		// Content starts on the line after the indicator, indented. A
		// folded scalar's joined lines make columns approximate past the
		// first fold.
		indent := e.Indent
		if indent == 0 {
			indent = e.Pos.Col
		}
		return e.Pos.Line + line, indent + col
	case e.Style&(doubleQuoted|singleQuoted) != 0:
		if line == 1 {
			return e.Pos.Line, e.Pos.Col + 1 + col
		}
		return e.Pos.Line + line - 1, col + 1
	default:
		if line == 1 {
			return e.Pos.Line, e.Pos.Col + col
		}
		return e.Pos.Line + line - 1, col + 1
	}
}

// runeCol returns the 0-based line-relative rune column and 1-based line of
// rune offset off in text.
func runeLineCol(text string, off int) (line, col int) {
	line = 1
	i := 0
	for _, r := range text {
		if i == off {
			break
		}
		if r == '\n' {
			line++
			col = 0
		} else {
			col++
		}
		i++
	}
	return line, col
}

var (
	metricsMapType = reflect.TypeOf(map[string]*Metric(nil))
	hostPtrType    = reflect.TypeOf((*Host)(nil))
	hostsType      = reflect.TypeOf([]*Host(nil))
	metricPtrType  = reflect.TypeOf((*Metric)(nil))
	fleetType      = reflect.TypeOf(Fleet{})
	waveType       = reflect.TypeOf(Wave{})
)

// checkRefs finds what expr's type checker cannot: host used where it is
// not set, and metric names (map keys, unchecked by expr) that no query
// defines.
func checkRefs(fileName string, e Expr, role string, root ast.Node, opts CompileOptions, text string) ErrorList {
	var errs ErrorList
	add := func(n ast.Node, format string, args ...any) {
		line, col := runeLineCol(text, n.Location().From)
		fl, fc := e.filePos(line, col)
		errs = append(errs, &PosError{File: fileName, Line: fl, Col: fc, Msg: role + ": " + fmt.Sprintf(format, args...)})
	}
	known := slices.Sorted(slices.Values(opts.Metrics))
	walk(root, func(n ast.Node) {
		switch n := n.(type) {
		case *ast.IdentifierNode:
			if n.Value == "host" && role == roleFleet {
				add(n, "host is only set in host_rollback_when (the host being judged); rollback_when judges the fleet: use hosts, fleet or fraction(hosts, ...)")
			}
		case *ast.MemberNode:
			if n.Node.Type() != metricsMapType {
				return
			}
			key, ok := n.Property.(*ast.StringNode)
			if !ok || slices.Contains(known, key.Value) {
				return
			}
			if len(known) == 0 {
				add(n.Property, "unknown metric %q: the spec defines no metrics.queries", key.Value)
				return
			}
			add(n.Property, "unknown metric %q (metrics: %s)", key.Value, strings.Join(known, ", "))
		}
	})
	sortByPos(errs)
	return errs
}

// walk calls fn for every node of the tree rooted at n, parents first.
func walk(n ast.Node, fn func(ast.Node)) {
	if n == nil {
		return
	}
	fn(n)
	switch n := n.(type) {
	case *ast.UnaryNode:
		walk(n.Node, fn)
	case *ast.BinaryNode:
		walk(n.Left, fn)
		walk(n.Right, fn)
	case *ast.ChainNode:
		walk(n.Node, fn)
	case *ast.MemberNode:
		walk(n.Node, fn)
		walk(n.Property, fn)
	case *ast.SliceNode:
		walk(n.Node, fn)
		walk(n.From, fn)
		walk(n.To, fn)
	case *ast.CallNode:
		walk(n.Callee, fn)
		for _, a := range n.Arguments {
			walk(a, fn)
		}
	case *ast.BuiltinNode:
		for _, a := range n.Arguments {
			walk(a, fn)
		}
		walk(n.Map, fn)
	case *ast.PredicateNode:
		walk(n.Node, fn)
	case *ast.ConditionalNode:
		walk(n.Cond, fn)
		walk(n.Exp1, fn)
		walk(n.Exp2, fn)
	case *ast.VariableDeclaratorNode:
		walk(n.Value, fn)
		walk(n.Expr, fn)
	case *ast.SequenceNode:
		for _, x := range n.Nodes {
			walk(x, fn)
		}
	case *ast.ArrayNode:
		for _, x := range n.Nodes {
			walk(x, fn)
		}
	case *ast.MapNode:
		for _, x := range n.Pairs {
			walk(x, fn)
		}
	case *ast.PairNode:
		walk(n.Key, fn)
		walk(n.Value, fn)
	}
}

// usedMetrics is UsesMetrics' answer for the given programs.
func usedMetrics(progs ...*program) []string {
	names := []string{}
	all := false
	for _, pr := range progs {
		if pr == nil {
			continue
		}
		walk(pr.tree, func(n ast.Node) {
			switch n := n.(type) {
			case *ast.CallNode:
				if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "top_mean" {
					all = true // reads every host's score
				}
			case *ast.MemberNode:
				prop, ok := n.Property.(*ast.StringNode)
				switch t := n.Node.Type(); {
				case t == metricsMapType:
					if !ok {
						all = true
					} else {
						names = append(names, prop.Value)
					}
				case t == hostPtrType && ok && (prop.Value == "score" || prop.Value == "degraded"):
					all = true
				case t == fleetType && ok && prop.Value != "size" && prop.Value != "changed":
					all = true
				case t == hostPtrType && !ok:
					all = true
				}
			}
		})
	}
	if all {
		return nil
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// topMeanVM is top_mean as expr's VM calls it.
func (pr *program) topMeanVM(params ...any) (any, error) {
	if len(params) != 2 {
		return nil, fmt.Errorf("top_mean takes 2 arguments, got %d", len(params))
	}
	hosts, _ := params[0].([]*Host)
	var share float64
	switch s := params[1].(type) {
	case float64:
		share = s
	case int:
		share = float64(s)
	default:
		return nil, fmt.Errorf("top_mean: share is %T, not a number", params[1])
	}
	v, scratch, err := topMean(pr.scratch, hosts, share)
	pr.scratch = scratch
	if err != nil {
		return nil, err
	}
	return v, nil
}

// eval runs the program against env: the fast path when the expression is
// in its subset, expr's VM otherwise.
func (pr *program) eval(env *Env) (bool, error) {
	if pr.fast != nil {
		return pr.evalFast(env)
	}
	return pr.evalVM(env)
}

func (pr *program) evalFast(env *Env) (bool, error) {
	f := &pr.frame
	f.env, f.err = env, nil
	v := pr.fast(f)
	f.env = nil
	if f.err != nil {
		return false, f.err
	}
	return v, nil
}

func (pr *program) evalVM(env *Env) (bool, error) {
	out, err := pr.machine.Run(pr.prog, env)
	if err != nil {
		return false, err
	}
	v, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("result is %T, not a boolean", out)
	}
	return v, nil
}

// The fast path. expr's VM boxes every float64 into an interface and
// fetches struct fields through reflection, so evaluating a host policy
// allocates, 10,000 times per tick. After expr has parsed and type-checked
// an expression (expr stays the single source of truth for syntax and
// types), fastCompiler turns the checked AST into typed Go closures for the
// subset policies use: literals, fields of Env, Fleet, Wave, Host and
// Metric, metrics[<constant>], arithmetic, comparisons, && || !, ?:, abs,
// min, max, float, len, fraction, top_mean and count/any/all/none/one over
// hosts with a predicate. Anything else makes the whole expression run on
// expr's VM instead. TestFastPathMatchesVM checks the two agree.

// frame is the state of one fast evaluation.
type frame struct {
	env *Env
	// scope holds the element each enclosing predicate is looking at, by
	// predicate depth.
	scope []*Host
	// err is the first runtime error; closures return zero values after it.
	err error
}

func (f *frame) fail(err error) {
	if f.err == nil {
		f.err = err
	}
}

type (
	boolFn   func(*frame) bool
	intFn    func(*frame) int
	floatFn  func(*frame) float64
	strFn    func(*frame) string
	hostFn   func(*frame) *Host
	hostsFn  func(*frame) []*Host
	metricFn func(*frame) *Metric
)

// errUnsupported says an expression is outside the fast path's subset.
var errUnsupported = errors.New("outside the fast path")

func unsupported(n ast.Node) error {
	return fmt.Errorf("%w: %T %s", errUnsupported, n, n)
}

type fastCompiler struct {
	fractions map[ast.Node]*fractionCall
	pr        *program
	// depth is the number of predicates around the node being compiled.
	depth, maxDepth int
}

// numFn is a compiled number: exactly one of i and f is set.
type numFn struct {
	i intFn
	f floatFn
}

func (n numFn) float() floatFn {
	if n.f != nil {
		return n.f
	}
	i := n.i
	return func(fr *frame) float64 { return float64(i(fr)) }
}

func (c *fastCompiler) boolean(n ast.Node) (boolFn, error) {
	switch n := n.(type) {
	case *ast.BoolNode:
		v := n.Value
		return func(*frame) bool { return v }, nil
	case *ast.ConstantNode:
		if v, ok := n.Value.(bool); ok {
			return func(*frame) bool { return v }, nil
		}
	case *ast.UnaryNode:
		if n.Operator == "!" || n.Operator == "not" {
			x, err := c.boolean(n.Node)
			if err != nil {
				return nil, err
			}
			return func(f *frame) bool { return !x(f) }, nil
		}
	case *ast.BinaryNode:
		return c.binaryBool(n)
	case *ast.MemberNode:
		return c.boolField(n)
	case *ast.BuiltinNode:
		return c.predicateBool(n)
	case *ast.ConditionalNode:
		return conditional(c, n, c.boolean)
	}
	return nil, unsupported(n)
}

// conditional compiles cond ? exp1 : exp2 for branches of one type.
func conditional[F ~func(*frame) T, T any](c *fastCompiler, n *ast.ConditionalNode, branch func(ast.Node) (F, error)) (F, error) {
	cond, err := c.boolean(n.Cond)
	if err != nil {
		return nil, err
	}
	a, err := branch(n.Exp1)
	if err != nil {
		return nil, err
	}
	b, err := branch(n.Exp2)
	if err != nil {
		return nil, err
	}
	return pick(cond, a, b), nil
}

// pick is the closure of cond ? a : b.
func pick[F ~func(*frame) T, T any](cond boolFn, a, b F) F {
	return F(func(f *frame) T {
		if cond(f) {
			return a(f)
		}
		return b(f)
	})
}

func (c *fastCompiler) binaryBool(n *ast.BinaryNode) (boolFn, error) {
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
		if n.Operator == "&&" || n.Operator == "and" {
			return func(f *frame) bool { return l(f) && r(f) }, nil
		}
		return func(f *frame) bool { return l(f) || r(f) }, nil
	case "==", "!=":
		eq, err := c.equal(n)
		if err != nil {
			return nil, err
		}
		if n.Operator == "!=" {
			return func(f *frame) bool { return !eq(f) }, nil
		}
		return eq, nil
	case "<", ">", "<=", ">=":
		l, err := c.number(n.Left)
		if err != nil {
			return nil, err
		}
		r, err := c.number(n.Right)
		if err != nil {
			return nil, err
		}
		if l.i != nil && r.i != nil {
			a, b := l.i, r.i
			switch n.Operator {
			case "<":
				return func(f *frame) bool { return a(f) < b(f) }, nil
			case ">":
				return func(f *frame) bool { return a(f) > b(f) }, nil
			case "<=":
				return func(f *frame) bool { return a(f) <= b(f) }, nil
			default:
				return func(f *frame) bool { return a(f) >= b(f) }, nil
			}
		}
		a, b := l.float(), r.float()
		switch n.Operator {
		case "<":
			return func(f *frame) bool { return a(f) < b(f) }, nil
		case ">":
			return func(f *frame) bool { return a(f) > b(f) }, nil
		case "<=":
			return func(f *frame) bool { return a(f) <= b(f) }, nil
		default:
			return func(f *frame) bool { return a(f) >= b(f) }, nil
		}
	}
	return nil, unsupported(n)
}

// equal compiles == between two numbers, two strings or two booleans.
func (c *fastCompiler) equal(n *ast.BinaryNode) (boolFn, error) {
	if l, err := c.number(n.Left); err == nil {
		r, err := c.number(n.Right)
		if err != nil {
			return nil, err
		}
		if l.i != nil && r.i != nil {
			a, b := l.i, r.i
			return func(f *frame) bool { return a(f) == b(f) }, nil
		}
		a, b := l.float(), r.float()
		return func(f *frame) bool { return a(f) == b(f) }, nil
	}
	if l, err := c.str(n.Left); err == nil {
		r, err := c.str(n.Right)
		if err != nil {
			return nil, err
		}
		return func(f *frame) bool { return l(f) == r(f) }, nil
	}
	l, err := c.boolean(n.Left)
	if err != nil {
		return nil, err
	}
	r, err := c.boolean(n.Right)
	if err != nil {
		return nil, err
	}
	return func(f *frame) bool { return l(f) == r(f) }, nil
}

func (c *fastCompiler) boolField(n *ast.MemberNode) (boolFn, error) {
	prop, ok := n.Property.(*ast.StringNode)
	if !ok || n.Optional || n.Method {
		return nil, unsupported(n)
	}
	switch n.Node.Type() {
	case hostPtrType:
		h, err := c.host(n.Node)
		if err != nil {
			return nil, err
		}
		var get func(*Host) bool
		switch prop.Value {
		case "degraded":
			get = func(h *Host) bool { return h.Degraded }
		case "applied":
			get = func(h *Host) bool { return h.Applied }
		case "failed":
			get = func(h *Host) bool { return h.Failed }
		default:
			return nil, unsupported(n)
		}
		return hostField(h, prop.Value, get), nil
	case metricPtrType:
		m, err := c.metric(n.Node)
		if err != nil {
			return nil, err
		}
		var get func(*Metric) bool
		switch prop.Value {
		case "nodata":
			get = func(m *Metric) bool { return m.NoData }
		case "has_control":
			get = func(m *Metric) bool { return m.HasControl }
		case "low_confidence":
			get = func(m *Metric) bool { return m.LowConfidence }
		default:
			return nil, unsupported(n)
		}
		return metricField(m, prop.Value, get), nil
	}
	return nil, unsupported(n)
}

// hostField reads one field of the host src gives; a nil host fails the
// evaluation, as fetching from nil does in expr.
func hostField[T any](src hostFn, field string, get func(*Host) T) func(*frame) T {
	return func(f *frame) T {
		x := src(f)
		if x == nil {
			f.fail(errNilHost(field))
			var zero T
			return zero
		}
		return get(x)
	}
}

// metricField reads one field of the metric src gives; a host without
// that metric fails the evaluation.
func metricField[T any](src metricFn, field string, get func(*Metric) T) func(*frame) T {
	return func(f *frame) T {
		x := src(f)
		if x == nil {
			f.fail(errNilMetric(field))
			var zero T
			return zero
		}
		return get(x)
	}
}

func errNilHost(field string) error {
	return fmt.Errorf("cannot fetch %s from a nil host", field)
}

func errNilMetric(field string) error {
	return fmt.Errorf("cannot fetch %s: the host has no value for that metric", field)
}

// predicate compiles a predicate body one level deeper.
func (c *fastCompiler) predicate(n ast.Node) (boolFn, int, error) {
	p, ok := n.(*ast.PredicateNode)
	if !ok {
		return nil, 0, unsupported(n)
	}
	c.depth++
	c.maxDepth = max(c.maxDepth, c.depth)
	body, err := c.boolean(p.Node)
	c.depth--
	return body, c.depth, err
}

func (c *fastCompiler) predicateBool(n *ast.BuiltinNode) (boolFn, error) {
	if len(n.Arguments) != 2 || n.Map != nil {
		return nil, unsupported(n)
	}
	switch n.Name {
	case "any", "all", "none", "one":
	default:
		return nil, unsupported(n)
	}
	list, err := c.hosts(n.Arguments[0])
	if err != nil {
		return nil, err
	}
	body, d, err := c.predicate(n.Arguments[1])
	if err != nil {
		return nil, err
	}
	switch n.Name {
	case "any":
		return func(f *frame) bool {
			for _, h := range list(f) {
				f.scope[d] = h
				if body(f) {
					return true
				}
			}
			return false
		}, nil
	case "all":
		return func(f *frame) bool {
			for _, h := range list(f) {
				f.scope[d] = h
				if !body(f) {
					return false
				}
			}
			return true
		}, nil
	case "none":
		return func(f *frame) bool {
			for _, h := range list(f) {
				f.scope[d] = h
				if body(f) {
					return false
				}
			}
			return true
		}, nil
	default: // one
		return func(f *frame) bool {
			count := 0
			for _, h := range list(f) {
				f.scope[d] = h
				if body(f) {
					count++
					if count > 1 {
						return false
					}
				}
			}
			return count == 1
		}, nil
	}
}

// count compiles count(hosts, predicate), or len(filter(hosts, predicate)).
func (c *fastCompiler) count(n *ast.BuiltinNode) (intFn, error) {
	if len(n.Arguments) != 2 || n.Map != nil || n.Threshold != nil {
		return nil, unsupported(n)
	}
	list, err := c.hosts(n.Arguments[0])
	if err != nil {
		return nil, err
	}
	body, d, err := c.predicate(n.Arguments[1])
	if err != nil {
		return nil, err
	}
	return func(f *frame) int {
		count := 0
		for _, h := range list(f) {
			f.scope[d] = h
			if body(f) {
				count++
			}
		}
		return count
	}, nil
}

func (c *fastCompiler) str(n ast.Node) (strFn, error) {
	switch n := n.(type) {
	case *ast.StringNode:
		v := n.Value
		return func(*frame) string { return v }, nil
	case *ast.ConstantNode:
		if v, ok := n.Value.(string); ok {
			return func(*frame) string { return v }, nil
		}
	case *ast.IdentifierNode:
		if n.Value == "phase" {
			return func(f *frame) string { return f.env.Phase }, nil
		}
	case *ast.MemberNode:
		prop, ok := n.Property.(*ast.StringNode)
		if !ok || n.Optional || n.Method {
			break
		}
		switch n.Node.Type() {
		case waveType:
			if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "wave" && prop.Value == "name" {
				return func(f *frame) string { return f.env.Wave.Name }, nil
			}
		case hostPtrType:
			h, err := c.host(n.Node)
			if err != nil {
				return nil, err
			}
			var get func(*Host) string
			switch prop.Value {
			case "name":
				get = func(h *Host) string { return h.Name }
			case "wave":
				get = func(h *Host) string { return h.Wave }
			default:
				return nil, unsupported(n)
			}
			return hostField(h, prop.Value, get), nil
		}
	case *ast.ConditionalNode:
		return conditional(c, n, c.str)
	}
	return nil, unsupported(n)
}

func (c *fastCompiler) host(n ast.Node) (hostFn, error) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		if n.Value == "host" {
			return func(f *frame) *Host { return f.env.Host }, nil
		}
	case *ast.PointerNode:
		if n.Name == "" && c.depth > 0 && n.Type() == hostPtrType {
			d := c.depth - 1
			return func(f *frame) *Host { return f.scope[d] }, nil
		}
	}
	return nil, unsupported(n)
}

func (c *fastCompiler) hosts(n ast.Node) (hostsFn, error) {
	if id, ok := n.(*ast.IdentifierNode); ok && id.Value == "hosts" {
		return func(f *frame) []*Host { return f.env.Hosts }, nil
	}
	return nil, unsupported(n)
}

// metric compiles <host>.metrics.<name> (or metrics["name"]).
func (c *fastCompiler) metric(n ast.Node) (metricFn, error) {
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Optional || m.Method {
		return nil, unsupported(n)
	}
	key, ok := m.Property.(*ast.StringNode)
	if !ok {
		return nil, unsupported(n)
	}
	inner, ok := m.Node.(*ast.MemberNode)
	if !ok || inner.Optional || inner.Method || inner.Node.Type() != hostPtrType {
		return nil, unsupported(n)
	}
	if p, ok := inner.Property.(*ast.StringNode); !ok || p.Value != "metrics" {
		return nil, unsupported(n)
	}
	h, err := c.host(inner.Node)
	if err != nil {
		return nil, err
	}
	name := key.Value
	return hostField(h, "metrics", func(x *Host) *Metric { return x.Metrics[name] }), nil
}

// number compiles a numeric expression, keeping ints as ints where expr
// does (int arithmetic, count, len) so results match expr's exactly.
func (c *fastCompiler) number(n ast.Node) (numFn, error) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		v := n.Value
		return numFn{i: func(*frame) int { return v }}, nil
	case *ast.FloatNode:
		v := n.Value
		return numFn{f: func(*frame) float64 { return v }}, nil
	case *ast.ConstantNode:
		switch v := n.Value.(type) {
		case int:
			return numFn{i: func(*frame) int { return v }}, nil
		case float64:
			return numFn{f: func(*frame) float64 { return v }}, nil
		}
	case *ast.IdentifierNode:
		if n.Value == "elapsed" {
			return numFn{f: func(f *frame) float64 { return f.env.Elapsed }}, nil
		}
	case *ast.UnaryNode:
		x, err := c.number(n.Node)
		if err != nil {
			return numFn{}, err
		}
		switch n.Operator {
		case "+":
			return x, nil
		case "-":
			if x.i != nil {
				i := x.i
				return numFn{i: func(f *frame) int { return -i(f) }}, nil
			}
			fl := x.f
			return numFn{f: func(f *frame) float64 { return -fl(f) }}, nil
		}
	case *ast.BinaryNode:
		return c.arith(n)
	case *ast.MemberNode:
		return c.numField(n)
	case *ast.BuiltinNode:
		return c.numBuiltin(n)
	case *ast.CallNode:
		return c.topMean(n)
	case *ast.ConditionalNode:
		if call, ok := c.fractions[n]; ok {
			return c.fraction(call)
		}
		cond, err := c.boolean(n.Cond)
		if err != nil {
			return numFn{}, err
		}
		a, err := c.number(n.Exp1)
		if err != nil {
			return numFn{}, err
		}
		b, err := c.number(n.Exp2)
		if err != nil {
			return numFn{}, err
		}
		switch {
		case a.i != nil && b.i != nil:
			return numFn{i: pick(cond, a.i, b.i)}, nil
		case a.f != nil && b.f != nil:
			return numFn{f: pick(cond, a.f, b.f)}, nil
		}
		// Mixed int and float branches yield either type in expr.
	}
	return numFn{}, unsupported(n)
}

func (c *fastCompiler) arith(n *ast.BinaryNode) (numFn, error) {
	switch n.Operator {
	case "+", "-", "*", "/", "%", "**", "^":
	default:
		return numFn{}, unsupported(n)
	}
	l, err := c.number(n.Left)
	if err != nil {
		return numFn{}, err
	}
	r, err := c.number(n.Right)
	if err != nil {
		return numFn{}, err
	}
	if l.i != nil && r.i != nil {
		a, b := l.i, r.i
		switch n.Operator {
		case "+":
			return numFn{i: func(f *frame) int { return a(f) + b(f) }}, nil
		case "-":
			return numFn{i: func(f *frame) int { return a(f) - b(f) }}, nil
		case "*":
			return numFn{i: func(f *frame) int { return a(f) * b(f) }}, nil
		case "%":
			return numFn{i: func(f *frame) int {
				x, y := a(f), b(f)
				if y == 0 {
					f.fail(errors.New("integer divide by zero"))
					return 0
				}
				return x % y
			}}, nil
		}
	}
	if n.Operator == "%" {
		return numFn{}, unsupported(n)
	}
	a, b := l.float(), r.float()
	switch n.Operator {
	case "+":
		return numFn{f: func(f *frame) float64 { return a(f) + b(f) }}, nil
	case "-":
		return numFn{f: func(f *frame) float64 { return a(f) - b(f) }}, nil
	case "*":
		return numFn{f: func(f *frame) float64 { return a(f) * b(f) }}, nil
	case "/":
		return numFn{f: func(f *frame) float64 { return a(f) / b(f) }}, nil
	default: // ** and ^
		return numFn{f: func(f *frame) float64 { return math.Pow(a(f), b(f)) }}, nil
	}
}

func (c *fastCompiler) numField(n *ast.MemberNode) (numFn, error) {
	prop, ok := n.Property.(*ast.StringNode)
	if !ok || n.Optional || n.Method {
		return numFn{}, unsupported(n)
	}
	switch n.Node.Type() {
	case fleetType:
		if id, ok := n.Node.(*ast.IdentifierNode); !ok || id.Value != "fleet" {
			break
		}
		switch prop.Value {
		case "size":
			return numFn{i: func(f *frame) int { return f.env.Fleet.Size }}, nil
		case "changed":
			return numFn{i: func(f *frame) int { return f.env.Fleet.Changed }}, nil
		case "degraded":
			return numFn{i: func(f *frame) int { return f.env.Fleet.Degraded }}, nil
		case "fraction_degraded":
			return numFn{f: func(f *frame) float64 { return f.env.Fleet.FractionDegraded }}, nil
		case "mean_score":
			return numFn{f: func(f *frame) float64 { return f.env.Fleet.MeanScore }}, nil
		case "max_score":
			return numFn{f: func(f *frame) float64 { return f.env.Fleet.MaxScore }}, nil
		}
	case waveType:
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "wave" && prop.Value == "index" {
			return numFn{i: func(f *frame) int { return f.env.Wave.Index }}, nil
		}
	case hostPtrType:
		if prop.Value != "score" {
			break
		}
		h, err := c.host(n.Node)
		if err != nil {
			return numFn{}, err
		}
		return numFn{f: hostField(h, "score", func(x *Host) float64 { return x.Score })}, nil
	case metricPtrType:
		m, err := c.metric(n.Node)
		if err != nil {
			return numFn{}, err
		}
		name := prop.Value
		if name == "samples" {
			return numFn{i: metricField(m, name, func(x *Metric) int { return x.Samples })}, nil
		}
		var get func(*Metric) float64
		switch name {
		case "current":
			get = func(m *Metric) float64 { return m.Current }
		case "baseline":
			get = func(m *Metric) float64 { return m.Baseline }
		case "stddev":
			get = func(m *Metric) float64 { return m.Stddev }
		case "z":
			get = func(m *Metric) float64 { return m.Z }
		case "ratio":
			get = func(m *Metric) float64 { return m.Ratio }
		case "delta":
			get = func(m *Metric) float64 { return m.Delta }
		case "score":
			get = func(m *Metric) float64 { return m.Score }
		case "control":
			get = func(m *Metric) float64 { return m.Control }
		default:
			return numFn{}, unsupported(n)
		}
		return numFn{f: metricField(m, name, get)}, nil
	}
	return numFn{}, unsupported(n)
}

func (c *fastCompiler) numBuiltin(n *ast.BuiltinNode) (numFn, error) {
	switch n.Name {
	case "count":
		i, err := c.count(n)
		return numFn{i: i}, err
	case "len":
		if len(n.Arguments) != 1 {
			break
		}
		if filter, ok := n.Arguments[0].(*ast.BuiltinNode); ok && filter.Name == "filter" {
			i, err := c.count(filter)
			return numFn{i: i}, err
		}
		list, err := c.hosts(n.Arguments[0])
		if err != nil {
			return numFn{}, err
		}
		return numFn{i: func(f *frame) int { return len(list(f)) }}, nil
	case "float":
		if len(n.Arguments) != 1 {
			break
		}
		x, err := c.number(n.Arguments[0])
		if err != nil {
			return numFn{}, err
		}
		return numFn{f: x.float()}, nil
	case "abs":
		if len(n.Arguments) != 1 {
			break
		}
		x, err := c.number(n.Arguments[0])
		if err != nil {
			return numFn{}, err
		}
		if x.i != nil {
			i := x.i
			return numFn{i: func(f *frame) int {
				if v := i(f); v < 0 {
					return -v
				} else {
					return v
				}
			}}, nil
		}
		fl := x.f
		return numFn{f: func(f *frame) float64 {
			if v := fl(f); v < 0 {
				return -v
			} else {
				return v
			}
		}}, nil
	case "min", "max":
		return c.minMax(n)
	}
	return numFn{}, unsupported(n)
}

// minMax compiles min/max over two or more numbers of one kind, with
// expr's rule: a later argument replaces the current one when the current
// is less (max) or more (min) than it, so NaN behaves as in expr.
func (c *fastCompiler) minMax(n *ast.BuiltinNode) (numFn, error) {
	if len(n.Arguments) < 2 {
		return numFn{}, unsupported(n)
	}
	args := make([]numFn, len(n.Arguments))
	ints, floats := 0, 0
	for i, a := range n.Arguments {
		x, err := c.number(a)
		if err != nil {
			return numFn{}, err
		}
		args[i] = x
		if x.i != nil {
			ints++
		} else {
			floats++
		}
	}
	isMax := n.Name == "max"
	switch {
	case ints == len(args):
		fns := make([]intFn, len(args))
		for i, a := range args {
			fns[i] = a.i
		}
		return numFn{i: func(f *frame) int {
			v := fns[0](f)
			for _, fn := range fns[1:] {
				x := fn(f)
				if (isMax && v < x) || (!isMax && v > x) {
					v = x
				}
			}
			return v
		}}, nil
	case floats == len(args):
		fns := make([]floatFn, len(args))
		for i, a := range args {
			fns[i] = a.f
		}
		return numFn{f: func(f *frame) float64 {
			v := fns[0](f)
			for _, fn := range fns[1:] {
				x := fn(f)
				if (isMax && v < x) || (!isMax && v > x) {
					v = x
				}
			}
			return v
		}}, nil
	}
	return numFn{}, unsupported(n) // mixed: expr returns either type
}

func (c *fastCompiler) topMean(n *ast.CallNode) (numFn, error) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || id.Value != "top_mean" || len(n.Arguments) != 2 {
		return numFn{}, unsupported(n)
	}
	list, err := c.hosts(n.Arguments[0])
	if err != nil {
		return numFn{}, err
	}
	share, err := c.number(n.Arguments[1])
	if err != nil {
		return numFn{}, err
	}
	sh, pr := share.float(), c.pr
	return numFn{f: func(f *frame) float64 {
		v, scratch, err := topMean(pr.scratch, list(f), sh(f))
		pr.scratch = scratch
		if err != nil {
			f.fail(err)
		}
		return v
	}}, nil
}

// fraction compiles a rewritten fraction(list, predicate) in one pass.
func (c *fastCompiler) fraction(call *fractionCall) (numFn, error) {
	list, err := c.hosts(call.List)
	if err != nil {
		return numFn{}, err
	}
	body, d, err := c.predicate(call.Pred)
	if err != nil {
		return numFn{}, err
	}
	return numFn{f: func(f *frame) float64 {
		hs := list(f)
		count := 0
		for _, h := range hs {
			f.scope[d] = h
			if body(f) {
				count++
			}
		}
		return fraction(count, len(hs))
	}}, nil
}
