package policies

import "errors"

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

// Policy is a compiled policy.
type Policy struct {
	Source
}

// CompileOptions are what compilation checks references against.
type CompileOptions struct {
	// Metrics are the query names; host.metrics.<name> must be one of them.
	Metrics []string
}

// ParseFile reads a policy file (one policy or a list) into sources,
// reporting every problem with file:line:col. TODO(policies): implement.
func ParseFile(file string, data []byte) ([]Source, error) {
	return nil, errors.New("not implemented")
}

// Compile compiles src once, against Env. TODO(policies): implement.
func Compile(src Source, opts CompileOptions) (*Policy, error) {
	return nil, errors.New("not implemented")
}
