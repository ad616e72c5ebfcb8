package policies

import "fmt"

// Sensitivity presets.
const (
	SensitivityLow    = "low"
	SensitivityMedium = "medium"
	SensitivityHigh   = "high"
)

// Preset returns the detector configuration of a sensitivity preset: low,
// medium (the default; "" means medium) or high. The warm-up is a duration
// in a spec (detection.warmup), so the preset leaves it at 0 polls for the
// caller to set.
func Preset(name string) (DetectorConfig, error) {
	c := DetectorConfig{
		Threshold:          5,
		Allowance:          0.5,
		Smoothing:          2,
		RelFloor:           0.01,
		AbsFloor:           1e-9,
		TailQuantile:       0.925,
		MinBaselineSamples: 10,
		Band:               3,
		SelfCalibrate:      true,
		Tolerance:          0.10,
		BoundTolerance:     0.01,
	}
	switch name {
	case SensitivityLow:
		c.ZCap, c.Limit, c.Burst, c.BurstSpreads, c.Confidence = 5, 10, 3, 4, 0.9999
	case SensitivityMedium, "":
		c.ZCap, c.Limit, c.Burst, c.BurstSpreads, c.Confidence = 4, 6.5, 2, 3, 0.999
	case SensitivityHigh:
		c.ZCap, c.Limit, c.Burst, c.BurstSpreads, c.Confidence = 4, 5, 1.5, 2, 0.99
	default:
		return DetectorConfig{}, fmt.Errorf("sensitivity %q: must be low, medium or high", name)
	}
	return c, nil
}
