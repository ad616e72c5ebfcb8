package runner

import (
	"fmt"
	"time"

	"github.com/rollguard/rollguard/policies"
)

// EngineConfig is the detection engine's configuration for a rollout of
// spec over hosts with pols: the sensitivity preset with the spec's
// explicit overrides, and one metric per query. The rollout builds its
// engine with it, and so does the evaluation harness, so that what the
// harness judges is what a run does.
func EngineConfig(spec *Spec, hosts []string, pols []*policies.Policy) (policies.EngineConfig, error) {
	det, err := detectorConfig(spec)
	if err != nil {
		return policies.EngineConfig{}, err
	}
	var mcfg []policies.MetricConfig
	for _, q := range spec.Metrics.Queries {
		rel, abs := det.RelFloor, det.AbsFloor
		if q.RelFloor != nil {
			rel = *q.RelFloor
		}
		if q.AbsFloor != nil {
			abs = *q.AbsFloor
		}
		mc := policies.MetricConfig{Name: q.Name, HigherIsWorse: q.Worse != "lower", RelFloor: rel, AbsFloor: abs}
		if q.Tolerance != nil {
			mc.Tolerance = ptr(float64(*q.Tolerance))
		}
		if q.ToleranceAbs != nil {
			mc.ToleranceAbs = *q.ToleranceAbs
		}
		mcfg = append(mcfg, mc)
	}
	evals := make([]policies.Evaluator, len(pols))
	for i, p := range pols {
		evals[i] = p
	}
	return policies.EngineConfig{
		Hosts: hosts, Metrics: mcfg, Detector: det, Policies: evals,
		NoDataTicks: spec.Detection.NoDataTicks,
	}, nil
}

func detectorConfig(spec *Spec) (policies.DetectorConfig, error) {
	d := spec.Detection
	sens := d.Sensitivity
	if sens == "" {
		sens = "medium"
	}
	cfg, err := policies.Preset(sens)
	if err != nil {
		return cfg, fmt.Errorf("detection.sensitivity: %w", err)
	}
	if d.Allowance != nil {
		cfg.Allowance = *d.Allowance
	}
	if d.Threshold != nil {
		cfg.Threshold = *d.Threshold
	}
	if d.Smoothing != nil {
		cfg.Smoothing = *d.Smoothing
	}
	if d.RelFloor != nil {
		cfg.RelFloor = *d.RelFloor
	}
	if d.AbsFloor != nil {
		cfg.AbsFloor = *d.AbsFloor
	}
	if d.MinBaselineSamples > 0 {
		cfg.MinBaselineSamples = d.MinBaselineSamples
	}
	cfg.Tolerance = float64(d.Tolerance)
	cfg.Warmup = warmupPolls(d.Warmup.D(), spec.Metrics.Interval.D())
	return cfg, nil
}

// warmupPolls is the number of polls a warm-up covers at an interval: a
// poll whose interval begins within the warm-up is a warm-up poll.
func warmupPolls(warmup, interval time.Duration) int {
	if warmup <= 0 || interval <= 0 {
		return 0
	}
	return int((warmup + interval - 1) / interval)
}
