package policies

// funcEvaluator is an Evaluator made of closures, for tests that need a
// policy without compiling expr programs.
type funcEvaluator struct {
	name    string
	fleet   func(*Env) (bool, error)
	host    func(*Env, *Host) (bool, error)
	metrics []string
}

func (f *funcEvaluator) HasFleet() bool { return f.fleet != nil }
func (f *funcEvaluator) HasHost() bool  { return f.host != nil }
func (f *funcEvaluator) EvalFleet(env *Env) (bool, error) {
	return f.fleet(env)
}
func (f *funcEvaluator) EvalHost(env *Env, h *Host) (bool, error) {
	return f.host(env, h)
}
func (f *funcEvaluator) UsesMetrics() []string { return f.metrics }
func (f *funcEvaluator) PolicyName() string    { return f.name }
