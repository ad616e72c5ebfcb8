package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/runner"
	"github.com/rollguard/rollguard/steps"
)

// addLiveCommands adds the commands that touch real systems.
func addLiveCommands(root *cobra.Command) {}

// discover finds the targets of a spec.
func discover(ctx context.Context, spec *runner.Spec) ([]steps.Host, error) {
	switch {
	case len(spec.Targets.Static) > 0:
		return runner.StaticHosts(spec), nil
	}
	return nil, fmt.Errorf("targets: this source is not supported yet")
}
