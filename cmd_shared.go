package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/rollguard/rollguard/runner"
)

// openSharedState opens a state store shared between machines (Consul KV
// or Nomad Variables).
func openSharedState(ctx context.Context, spec *runner.Spec, log *slog.Logger) (*stateBackend, error) {
	return nil, fmt.Errorf("state.store %q is not available in this build", spec.State.Store)
}
