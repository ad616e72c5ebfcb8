package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...";
// without it, versionString reads the module version from the build info.
var version = ""

// versionString is the binary's version: the one given at build time, or
// the module version Go recorded (v1.2.0 for `go install
// github.com/rollguard/rollguard@v1.2.0`, a pseudo-version for a build
// from a checkout), or "dev" when Go recorded none.
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(version, bi)
}

func versionFrom(ldflags string, bi *debug.BuildInfo) string {
	switch {
	case ldflags != "":
		return ldflags
	case bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)":
		return bi.Main.Version
	}
	return "dev"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version (the same as --version)",
		Example: "  rollguard version\n  rollguard --version",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintf(c.OutOrStdout(), "rollguard %s\n", versionString())
			return nil
		},
	}
}
