package ports

import "time"

// Telemetry receives what a rollout does, as it does it, so that rollguard
// can report on itself (integrations/selfmetrics pushes it to a metrics
// store, where a dashboard shows rollouts over time). Every method returns
// at once and cannot fail: it is called on the tick path, and the
// rollout's safety never depends on its own metrics.
type Telemetry interface {
	// HostsApplied counts the hosts a wave's apply ran to its end on, or
	// failed on after changing something (they were touched). A host left
	// as it was (failed before any change, unreachable, skipped, matched
	// by no play) is not counted.
	HostsApplied(wave string, n int)
	// HostsReverted counts the hosts a revert was started for, by trigger
	// (the policy that fired, host-policy, apply-failed, interrupt, ...).
	HostsReverted(trigger string, n int)
	// Decision counts one policy's outcome at one tick: scope fleet or
	// host, outcome pass, fire, nodata or error.
	Decision(policy, scope, outcome string)
	// Tick records how long one tick took: the queries, the detectors and
	// the policies.
	Tick(d time.Duration)
	// Decided records how long after a regression became visible (a
	// changed host's metric left its baseline band in its worse
	// direction) a policy fired on it.
	Decided(policy string, sinceVisible time.Duration)
	// RunEnded records how the run ended (report.json's outcome).
	RunEnded(outcome string)
}

// NoTelemetry discards everything: the default.
type NoTelemetry struct{}

func (NoTelemetry) HostsApplied(string, int)        {}
func (NoTelemetry) HostsReverted(string, int)       {}
func (NoTelemetry) Decision(string, string, string) {}
func (NoTelemetry) Tick(time.Duration)              {}
func (NoTelemetry) Decided(string, time.Duration)   {}
func (NoTelemetry) RunEnded(string)                 {}
