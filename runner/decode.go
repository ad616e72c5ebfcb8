package runner

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rollguard/rollguard/policies"
)

// The decoder walks a yaml.Node tree against the Spec types itself, rather
// than through yaml.Unmarshal, so that every problem (unknown key, wrong
// type, bad enum, missing key) is collected with its line and column in one
// pass instead of stopping at the first.

// Limits that keep a hostile spec (deep nesting, alias bombs) from making
// the walk explode.
const (
	maxDepth = 64
	maxNodes = 200000
)

// decoder collects the errors of one spec file and remembers where each
// key's value was written, so that later checks can point at it.
type decoder struct {
	file string
	// data is the file's text, for the columns of block scalars.
	data []byte
	errs policies.ErrorList
	// nodes maps a key path ("canary.hosts", "waves[1].size") to its value
	// node; keys maps it to the key node.
	nodes   map[string]*yaml.Node
	keys    map[string]*yaml.Node
	visited int
	// env lists the ${NAME} references met while expanding.
	env []EnvRef
	// allowUnset replaces an unset ${NAME} by a placeholder instead of
	// reporting it; unknown holds the positions (line, col) of the values
	// that hold one, whose problems are then not reported.
	allowUnset bool
	unknown    map[[2]int]bool
	// unexpanded holds the errors of values whose ${...} did not expand;
	// no other problem is reported at their position.
	unexpanded map[*policies.PosError]bool
	// suggested holds the key paths an unknown key was taken for ("did
	// you mean"): that key is not also reported missing.
	suggested map[string]bool
}

func newDecoder(file string) *decoder {
	return &decoder{
		file:       file,
		nodes:      map[string]*yaml.Node{},
		keys:       map[string]*yaml.Node{},
		unknown:    map[[2]int]bool{},
		unexpanded: map[*policies.PosError]bool{},
		suggested:  map[string]bool{},
	}
}

// errorf records a problem at n's position (see posf).
func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, d.posf(n, format, args...))
}

// posf is a message at n's position (line 1 when n is nil or has no
// position, so that no problem is ever without a line).
func (d *decoder) posf(n *yaml.Node, format string, args ...any) *policies.PosError {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	return &policies.PosError{File: d.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// at returns the value node written for path, or the closest written
// ancestor's, so that a check on a defaulted field still has a position.
func (d *decoder) at(path string) *yaml.Node {
	for p := path; p != ""; p = parentPath(p) {
		if n := d.nodes[p]; n != nil {
			return n
		}
	}
	return d.nodes[""]
}

// has reports whether path was written in the spec (with a non-null value).
func (d *decoder) has(path string) bool {
	n := d.nodes[path]
	return n != nil && !isNull(n)
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// where names a path in messages: "canary", or "the spec" at the top.
func where(path string) string {
	if path == "" {
		return "the spec"
	}
	return path
}

// label prefixes a message with the path it is about.
func label(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

func isNull(n *yaml.Node) bool {
	n = policies.ResolveAlias(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node for a type error: a scalar by its text, unless
// the field is secret; anything else by its kind.
func (d *decoder) describe(n *yaml.Node, secret bool) string {
	if n.Kind != yaml.ScalarNode || secret {
		return policies.DescribeNode(n)
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return strconv.Quote(v)
}

// Custom types with flexible forms.
var (
	durationType     = reflect.TypeOf(Duration(0))
	sizeType         = reflect.TypeOf(Size{})
	shareType        = reflect.TypeOf(Share(0))
	toleranceType    = reflect.TypeOf(Tolerance{})
	hostSelectorType = reflect.TypeOf(HostSelector{})
	queriesType      = reflect.TypeOf(Queries(nil))
	targetType       = reflect.TypeOf(Target{})
	checkScopeType   = reflect.TypeOf(CheckScope(""))
)

// value decodes n into v (a settable value) at path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, secret bool, depth int) {
	d.visited++
	if depth > maxDepth || d.visited > maxNodes {
		if depth > maxDepth {
			d.errorf(n, "%snesting is too deep", label(path))
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		n = policies.ResolveAlias(n)
		if n == nil {
			return
		}
	}
	d.nodes[path] = n
	if isNull(n) {
		return // absent: the default applies
	}
	switch v.Type() {
	case durationType:
		d.duration(n, v, path)
		return
	case sizeType:
		if s, ok := d.size(n, path, 1); ok {
			v.Set(reflect.ValueOf(s))
		}
		return
	case shareType:
		if s, ok := d.share(n, path); ok {
			v.SetFloat(float64(s))
		}
		return
	case toleranceType:
		if s, ok := d.size(n, path, 0); ok {
			v.Set(reflect.ValueOf(Tolerance{s}))
		}
		return
	case hostSelectorType:
		d.hostSelector(n, v, path)
		return
	case checkScopeType:
		d.checkScope(n, v, path)
		return
	case queriesType:
		d.queries(n, v, path, depth)
		return
	case targetType:
		if n.Kind == yaml.ScalarNode {
			if n.Value == "" {
				d.errorf(n, "%shost name must not be empty", label(path))
				return
			}
			v.Set(reflect.ValueOf(Target{Name: n.Value}))
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		// A scalar that does not decode leaves the field unset, so that
		// the range checks of a set field (detection.threshold must be
		// over 0) do not report it a second time as a zero. A mapping
		// is kept with what did decode, for the checks of its other
		// keys.
		p := reflect.New(v.Type().Elem())
		errs := len(d.errs)
		d.value(n, p.Elem(), path, secret, depth+1)
		if len(d.errs) == errs || p.Elem().Kind() == reflect.Struct {
			v.Set(p)
		}
	case reflect.Struct:
		d.structure(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "%sexpected a list, got %s", label(path), d.describe(n, secret))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if isNull(item) {
				d.errorf(item, "%s: empty list entry", p)
				continue
			}
			d.value(item, s.Index(i), p, secret, depth+1)
		}
		v.Set(s)
	case reflect.Map:
		d.mapping(n, v, path, secret, depth)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "%sexpected a string, got %s", label(path), d.describe(n, secret))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, ok := d.scalar(n, "!!bool", "true or false", path, secret)
		if ok {
			v.SetBool(b == "true")
		}
	case reflect.Int:
		s, ok := d.scalar(n, "!!int", "an integer", path, secret)
		if !ok {
			return
		}
		i, err := strconv.ParseInt(s, 0, 64)
		if err != nil || int64(int(i)) != i {
			d.errorf(n, "%sinteger %s is out of range", label(path), d.describe(n, secret))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
			f, err := strconv.ParseFloat(n.Value, 64)
			if err == nil {
				v.SetFloat(f)
				return
			}
		}
		s, ok := d.scalar(n, "!!float", "a number", path, secret)
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			// .inf, .nan and 1e400 are YAML numbers, not finite ones.
			d.errorf(n, "%sexpected a finite number, got %s", label(path), d.describe(n, secret))
			return
		}
		v.SetFloat(f)
	case reflect.Interface:
		var a any
		if err := n.Decode(&a); err != nil {
			d.errorf(n, "%s%v", label(path), err)
			return
		}
		if a != nil {
			v.Set(reflect.ValueOf(a))
		}
	default:
		d.errorf(n, "%sunsupported field type %s", label(path), v.Type())
	}
}

// scalar checks n is a scalar resolving to tag and returns its text.
func (d *decoder) scalar(n *yaml.Node, tag, want, path string, secret bool) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != tag {
		d.errorf(n, "%sexpected %s, got %s", label(path), want, d.describe(n, secret))
		return "", false
	}
	if tag == "!!bool" {
		return strings.ToLower(n.Value), true
	}
	return strings.ReplaceAll(n.Value, "_", ""), true
}

// keyValues returns a mapping's key/value pairs, reporting duplicate and
// non-scalar keys.
func (d *decoder) keyValues(n *yaml.Node, path string) [][2]*yaml.Node {
	seen := map[string]*yaml.Node{}
	var kvs [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%skeys must be strings", label(path))
			continue
		}
		if k.Tag == "!!merge" || k.Value == "<<" && k.Style == 0 {
			d.errorf(k, "%smerge keys (<<) are not supported", label(path))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, "duplicate key %q in %s (first at line %d)", k.Value, where(path), first.Line)
			continue
		}
		seen[k.Value] = k
		kvs = append(kvs, [2]*yaml.Node{k, val})
	}
	return kvs
}

// field is one YAML key of a struct type.
type field struct {
	key    string
	index  int
	secret bool
}

// fieldsOf lists a struct's YAML keys in declaration order.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		fs = append(fs, field{key: tag, index: i, secret: secretFields[t.Name()+"."+tag]})
	}
	return fs
}

// structure decodes a mapping into a struct, reporting unknown keys (with
// the closest allowed one), bad enum values and missing required keys.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string, depth int) {
	t := v.Type()
	if n.Kind != yaml.MappingNode {
		// A whole file that is one scalar is not quoted: it may be a
		// secret given as the spec by mistake (-f vault-pass.txt).
		d.errorf(n, "%sexpected a mapping with keys %s, got %s", label(path), strings.Join(keysOf(t), ", "), d.describe(n, path == ""))
		return
	}
	fs := fieldsOf(t)
	byKey := map[string]field{}
	for _, f := range fs {
		byKey[f.key] = f
	}
	present := map[string]bool{}
	for _, kv := range d.keyValues(n, path) {
		k, val := kv[0], kv[1]
		f, ok := byKey[k.Value]
		if !ok {
			d.unknownKey(k, path, keysOf(t))
			continue
		}
		present[k.Value] = true
		p := joinPath(path, k.Value)
		d.keys[p] = k
		d.value(val, v.Field(f.index), p, f.secret, depth+1)
		if vals, ok := enums[t.Name()+"."+k.Value]; ok {
			d.enum(policies.ResolveAlias(val), v.Field(f.index), p, vals)
		}
	}
	for _, req := range required[t.Name()] {
		p := joinPath(path, req)
		switch {
		case !present[req] && d.suggested[p]:
			// "unknown key "queries2" (did you mean "queries"?)" says it.
		case !present[req]:
			d.errorf(n, "missing required key %q in %s", req, where(path))
		case d.hasErrorAt(d.nodes[p]):
			// "name: expected a string, got a mapping" says it.
		case isNull(d.nodes[p]) || isEmpty(v.Field(byKey[req].index)):
			d.errorf(d.nodes[p], "%s must not be empty", p)
		}
	}
}

// misspelt says whether an unknown key under path was taken for one of
// keys ("did you mean"): that message already says the key is missing.
func (d *decoder) misspelt(path string, keys ...string) bool {
	for _, k := range keys {
		if d.suggested[joinPath(path, k)] {
			return true
		}
	}
	return false
}

// hasErrorAt says whether a problem was reported at n's position.
func (d *decoder) hasErrorAt(n *yaml.Node) bool {
	if n == nil {
		return false
	}
	for _, err := range d.errs {
		if pe, ok := err.(*policies.PosError); ok && pe.File == d.file && pe.Line == n.Line && pe.Col == n.Column {
			return true
		}
	}
	return false
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return false
}

// enum checks a string (or each string of a list) against its allowed
// values.
func (d *decoder) enum(n *yaml.Node, v reflect.Value, path string, allowed []string) {
	check := func(n *yaml.Node, s, path string) {
		for _, a := range allowed {
			if s == a {
				return
			}
		}
		msg := fmt.Sprintf("%s: %q is not one of %s", path, s, strings.Join(allowed, ", "))
		if c := closest(s, allowed); c != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", c)
		}
		d.errorf(n, "%s", msg)
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind == yaml.ScalarNode && !isNull(n) {
			check(n, v.String(), path)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i := 0; i < v.Len() && i < len(n.Content); i++ {
			// An empty entry is reported as one by the decoder.
			if item := policies.ResolveAlias(n.Content[i]); item.Kind == yaml.ScalarNode && !isNull(item) {
				check(item, v.Index(i).String(), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
}

func keysOf(t reflect.Type) []string {
	var ks []string
	for _, f := range fieldsOf(t) {
		ks = append(ks, f.key)
	}
	return ks
}

func (d *decoder) unknownKey(k *yaml.Node, path string, allowed []string) {
	if c := closest(k.Value, allowed); c != "" {
		d.suggested[joinPath(path, c)] = true
		d.errorf(k, "unknown key %q in %s (did you mean %q?)", k.Value, where(path), c)
		return
	}
	d.errorf(k, "unknown key %q in %s (allowed: %s)", k.Value, where(path), strings.Join(allowed, ", "))
}

// closest returns the candidate nearest to s by edit distance, when it is
// near enough to be a typo.
func closest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+2
	for _, c := range candidates {
		if dist := editDistance(strings.ToLower(s), c); dist < bestD {
			best, bestD = c, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// mapping decodes a mapping with string keys into a map.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, secret bool, depth int) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%sexpected a mapping, got %s", label(path), d.describe(n, secret))
		return
	}
	m := reflect.MakeMap(v.Type())
	elem := v.Type().Elem()
	for _, kv := range d.keyValues(n, path) {
		k, val := kv[0], kv[1]
		p := joinPath(path, k.Value)
		d.keys[p] = k
		e := reflect.New(elem).Elem()
		if elem.Kind() == reflect.String {
			// Map values of string maps (meta, headers) accept any scalar.
			rv := policies.ResolveAlias(val)
			if rv == nil || rv.Kind != yaml.ScalarNode {
				d.errorf(val, "%s: expected a string, got %s", p, d.describe(val, secret))
				continue
			}
			d.nodes[p] = rv
			e.SetString(rv.Value)
		} else {
			d.value(val, e, p, secret, depth+1)
		}
		m.SetMapIndex(reflect.ValueOf(k.Value), e)
	}
	v.Set(m)
}

// duration decodes a Go duration ("90s", "5m"); negative ones are errors.
func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%sexpected a duration like \"90s\" or \"5m\", got %s", label(path), d.describe(n, false))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		hint := ""
		if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
			hint = " (a duration needs a unit)"
		}
		d.errorf(n, "%sexpected a duration like \"90s\" or \"5m\", got %s%s", label(path), d.describe(n, false), hint)
		return
	}
	if dur < 0 {
		d.errorf(n, "%sduration %s must not be negative", label(path), n.Value)
		return
	}
	v.SetInt(int64(dur))
}

// size decodes a count of hosts (>= least, 1 or 0) or a share "N%" (0 <
// N <= 100; 0 <= N when least is 0).
func (d *decoder) size(n *yaml.Node, path string, least int) (Size, bool) {
	const want = `a host count (3) or a share ("10%")`
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%sexpected %s, got %s", label(path), want, d.describe(n, false))
		return Size{}, false
	}
	if n.ShortTag() == "!!int" {
		c, err := strconv.Atoi(strings.ReplaceAll(n.Value, "_", ""))
		if err != nil || c < least {
			d.errorf(n, "%shost count must be at least %d, got %s", label(path), least, n.Value)
			return Size{}, false
		}
		return Size{Count: c}, true
	}
	if p, ok := strings.CutSuffix(strings.TrimSpace(n.Value), "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			d.errorf(n, "%sexpected %s, got %s", label(path), want, d.describe(n, false))
			return Size{}, false
		}
		switch {
		case least == 0 && !(f >= 0 && f <= 100):
			d.errorf(n, "%sshare must be from 0%% to 100%%, got %s", label(path), n.Value)
			return Size{}, false
		case least > 0 && !(f > 0 && f <= 100):
			d.errorf(n, "%sshare must be over 0%% and at most 100%%, got %s", label(path), n.Value)
			return Size{}, false
		}
		return Size{Percent: f}, true
	}
	d.errorf(n, "%sexpected %s, got %s", label(path), want, d.describe(n, false))
	return Size{}, false
}

// share decodes a fraction: "N%" (0 <= N <= 100) or a number in [0, 1].
func (d *decoder) share(n *yaml.Node, path string) (Share, bool) {
	const want = `a share like "10%" or 0.1`
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%sexpected %s, got %s", label(path), want, d.describe(n, false))
		return 0, false
	}
	text, percent := strings.CutSuffix(strings.TrimSpace(n.Value), "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	switch {
	case err != nil || !percent && n.ShortTag() != "!!float" && n.ShortTag() != "!!int":
		d.errorf(n, "%sexpected %s, got %s", label(path), want, d.describe(n, false))
		return 0, false
	case percent:
		f /= 100
	}
	if !(f >= 0 && f <= 1) {
		d.errorf(n, "%sshare must be between 0%% and 100%%, got %s", label(path), n.Value)
		return 0, false
	}
	return Share(f), true
}

// hostSelector decodes canary.hosts: a count, a share, names, {tag: t} or
// {meta: {k: v}}.
func (d *decoder) hostSelector(n *yaml.Node, v reflect.Value, path string) {
	var hs HostSelector
	switch n.Kind {
	case yaml.ScalarNode:
		s, ok := d.size(n, path, 1)
		if !ok {
			return
		}
		hs.Size = &s
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			d.errorf(n, "%sthe list of canary hosts must not be empty", label(path))
			return
		}
		for i, item := range n.Content {
			item = policies.ResolveAlias(item)
			p := fmt.Sprintf("%s[%d]", path, i)
			d.nodes[p] = item
			if item.Kind != yaml.ScalarNode || item.Value == "" {
				d.errorf(item, "%s: expected a host name, got %s", p, d.describe(item, false))
				continue
			}
			hs.Names = append(hs.Names, item.Value)
		}
	case yaml.MappingNode:
		kvs := d.keyValues(n, path)
		for _, kv := range kvs {
			k, val := kv[0], kv[1]
			p := joinPath(path, k.Value)
			d.keys[p] = k
			d.nodes[p] = policies.ResolveAlias(val)
			switch k.Value {
			case "tag":
				var tag string
				d.value(val, reflect.ValueOf(&tag).Elem(), p, false, 1)
				if tag == "" {
					d.errorf(val, "%s: tag must not be empty", p)
				}
				hs.Tag = tag
			case "meta":
				var meta map[string]string
				d.value(val, reflect.ValueOf(&meta).Elem(), p, false, 1)
				if len(meta) == 0 {
					d.errorf(val, "%s: meta must not be empty", p)
				}
				hs.Meta = meta
			default:
				d.unknownKey(k, path, []string{"tag", "meta"})
			}
		}
		if len(kvs) != 1 {
			d.errorf(n, "%sexpected exactly one of {tag: t} or {meta: {k: v}}", label(path))
		}
	default:
		d.errorf(n, "%sexpected a count (1), a share (\"10%%\"), a list of host names, {tag: t} or {meta: {k: v}}", label(path))
		return
	}
	v.Set(reflect.ValueOf(hs))
}

// checkScope decodes preflight.check: true (the canary), false, canary
// or all.
func (d *decoder) checkScope(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode {
		switch {
		case n.ShortTag() == "!!bool" && strings.ToLower(n.Value) == "true":
			v.SetString(string(CheckCanary))
			return
		case n.ShortTag() == "!!bool":
			return
		case n.Value == string(CheckCanary) || n.Value == string(CheckAll):
			v.SetString(n.Value)
			return
		}
	}
	d.errorf(n, "%sexpected true (check the canary), false, canary or all, got %s", label(path), d.describe(n, false))
}

// queries decodes metrics.queries, keeping the written order.
func (d *decoder) queries(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%sexpected a mapping of query names to {query, worse}, got %s", label(path), d.describe(n, false))
		return
	}
	var qs Queries
	for _, kv := range d.keyValues(n, path) {
		k, val := kv[0], kv[1]
		p := joinPath(path, k.Value)
		d.keys[p] = k
		if !isIdentifier(k.Value) {
			d.errorf(k, "%s: query name %q must be an identifier (letters, digits, _; not starting with a digit) so that policies can name it", path, k.Value)
		}
		q := Query{Name: k.Value}
		d.value(val, reflect.ValueOf(&q).Elem(), p, false, depth+1)
		if isNull(val) {
			d.errorf(val, "%s must not be empty", p)
		}
		q.Name = k.Value
		qs = append(qs, q)
	}
	v.Set(reflect.ValueOf(qs))
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
