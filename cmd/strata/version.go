package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// buildVersion is what `strata version` reports, from the build information Go embeds.
type buildVersion struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Time     string `json:"commitTime,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

func readBuildVersion() buildVersion {
	v := buildVersion{Module: "github.com/stratamq/strata", Version: "(unknown)", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Module, v.Version, v.Go = bi.Main.Path, bi.Main.Version, bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func versionCmd() *cobra.Command {
	return leaf("version", "the module version, git commit and Go version of this binary", "", nil, func(fs *pflag.FlagSet) runFunc {
		return func(_ context.Context, _ []string, stdout io.Writer) error {
			v := readBuildVersion()
			if jsonOutput(false) {
				return printJSON(stdout, v)
			}
			commit := v.Commit
			if commit == "" {
				commit = "(not recorded: built outside a git checkout or with -buildvcs=false)"
			} else if v.Modified {
				commit += " (with uncommitted changes)"
			}
			fmt.Fprintf(stdout, "strata %s\nmodule %s\ncommit %s\n", v.Version, v.Module, commit)
			if v.Time != "" {
				fmt.Fprintf(stdout, "committed %s\n", v.Time)
			}
			fmt.Fprintf(stdout, "go %s\n", v.Go)
			return nil
		}
	})
}
