package engine_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/rpe-project/engine"

// TestImportRules guards the direction of imports that docs/ARCHITECTURE.md
// describes (as tailscale's deptest does):
//
//   - release, wire, network and internal/* never import, even indirectly,
//     protoactor or a stage (actors/*): they are the parts a stage is built
//     from, usable and testable without an actor system;
//   - a stage (actors/*) never imports the engine root, which wires stages
//     together;
//   - cmd/rpe and cli (the commands it shares with programs that embed
//     rpe) import no stage directly: they use the engine's public API.
func TestImportRules(t *testing.T) {
	// Imports the rules forbid that are still there, each with why; the
	// test fails once one is gone, so the list only shrinks.
	importExceptions := map[string]string{}
	pkgs := listPackages(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	found := map[string]bool{}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		lower := isBelow(rel, "release") || isBelow(rel, "wire") || isBelow(rel, "network") || isBelow(rel, "internal")
		actorLib := false // reported once per package
		for _, d := range p.Deps {
			drel, own := strings.CutPrefix(d, module+"/")
			switch {
			case lower && !actorLib && strings.HasPrefix(d, "github.com/asynkron/protoactor-go"):
				actorLib = true
				t.Errorf("%s imports %s: protoactor belongs to the stages (actors/*) and the engine root", p.ImportPath, d)
			case lower && own && isBelow(drel, "actors"):
				t.Errorf("%s imports the stage %s", p.ImportPath, d)
			case isBelow(rel, "actors") && d == module:
				t.Errorf("the stage %s imports the engine root", p.ImportPath)
			}
		}
		if rel == "cmd/rpe" || rel == "cli" {
			for _, d := range p.Imports {
				if drel, own := strings.CutPrefix(d, module+"/"); own && isBelow(drel, "actors") {
					rule := rel + " -> " + drel
					if _, ok := importExceptions[rule]; ok {
						found[rule] = true
						continue
					}
					t.Errorf("%s imports the stage %s; use the engine's API", rel, d)
				}
			}
		}
	}
	for rule, why := range importExceptions {
		if !found[rule] {
			t.Errorf("import exception %q (%s) is no longer needed: remove it", rule, why)
		}
	}
}

// isBelow reports whether the module-relative path rel is dir or under it.
func isBelow(rel, dir string) bool { return rel == dir || strings.HasPrefix(rel, dir+"/") }

type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// listPackages runs go list on the module's non-test packages.
func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command to list packages with")
		}
	}
	cmd := exec.Command(goBin, "list", "-json=ImportPath,Imports,Deps", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}
