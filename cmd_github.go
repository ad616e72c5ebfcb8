package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/integrations/bundle"
	"github.com/rollguard/rollguard/integrations/github"
	"github.com/rollguard/rollguard/runner"
)

// newGitHubActionCmd is the entry point of action.yml: it reads the
// action's inputs, runs the command they name, and writes the outputs and
// the job summary.
func newGitHubActionCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "github-action",
		Short:  "Run as a GitHub Action step (reads INPUT_* variables)",
		Hidden: true,
		Example: `  # action.yml runs it with the action's inputs:
  INPUT_COMMAND=dry-run INPUT_SPEC=rollout.yaml INPUT_METRICS=rec.jsonl INPUT_CHANGE-AT=1704110400 rollguard github-action`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			inspect := func(path string) (github.SpecFacts, error) {
				spec, _, err := runner.LoadAllowUnset(path, nil)
				if err != nil {
					return github.SpecFacts{}, err
				}
				dir := spec.State.Dir
				if rel, err := filepath.Rel(".", dir); err == nil {
					dir = rel
				}
				return github.SpecFacts{StateStore: spec.State.Store, StateDir: dir, Requirements: bundle.Requirements(spec.Apply.Playbook)}, nil
			}
			res, err := github.Step(c.Context(), os.Getenv, github.Options{
				Run:     func(_ context.Context, argv []string, out io.Writer) int { return runTo(argv, out) },
				Inspect: inspect,
				Logger:  slog.New(slog.NewTextHandler(os.Stderr, nil)),
			})
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
