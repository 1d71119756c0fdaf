package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
)

func versionCommand() *command {
	return &command{
		name:    "version",
		args:    "[--json]",
		summary: "Print rpe's module version and how it was built.",
		run:     runVersion,
	}
}

// BuildInfo is what rpe version prints.
type BuildInfo struct {
	Version  string `json:"version"`            // module version, "(devel)" for a local build
	Go       string `json:"go"`                 // Go toolchain
	Platform string `json:"platform"`           // GOOS-GOARCH
	Revision string `json:"revision,omitempty"` // VCS commit
	Time     string `json:"time,omitempty"`     // VCS commit time
	Modified bool   `json:"modified,omitempty"` // built from a tree with changes
}

func readBuildInfo() BuildInfo {
	b := BuildInfo{Version: "(unknown)", Go: runtime.Version(), Platform: runtime.GOOS + "-" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func runVersion(ctx context.Context, e *env, args []string) error {
	c := e.cmds["version"]
	fs := newFlags(e, c)
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos); err != nil {
		return err
	}
	b := readBuildInfo()
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(b)
	}
	line := fmt.Sprintf("rpe %s %s %s", b.Version, b.Go, b.Platform)
	if b.Revision != "" {
		line += " " + b.Revision
		if b.Modified {
			line += "+modified"
		}
		if b.Time != "" {
			line += " " + b.Time
		}
	}
	_, err = fmt.Fprintln(e.stdout, line)
	return err
}
