package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/integrations/github"
)

// newGitHubActionCmd is the entry point of action.yml: it reads the
// action's inputs, runs the command they name, and writes the outputs and
// the job summary.
func newGitHubActionCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "github-action",
		Short:  "Run as a GitHub Action step (reads INPUT_* variables)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			res, err := github.Step(c.Context(), os.Getenv, func(_ context.Context, argv []string) int { return run(argv) },
				slog.New(slog.NewTextHandler(os.Stderr, nil)))
			if err != nil {
				fmt.Fprintln(os.Stderr, "rollguard:", err)
			}
			if res.ExitCode == 0 {
				return nil
			}
			return exitWith(res.ExitCode)
		},
	}
}
