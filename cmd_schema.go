package main

import (
	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/runner"
)

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of rollout.yaml and of policy files",
		Long: `schema prints a JSON Schema (draft 2020-12) generated from the Go types that
load rollout.yaml and policy files. Point your editor's YAML language server at
it for completion and inline errors.`,
		Example: `  rollguard schema > rollguard.schema.json
  # in rollout.yaml, for the YAML language server:
  # yaml-language-server: $schema=./rollguard.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := runner.Schema()
			if err != nil {
				return failed(err)
			}
			_, err = c.OutOrStdout().Write(append(s, '\n'))
			return err
		},
	}
}
