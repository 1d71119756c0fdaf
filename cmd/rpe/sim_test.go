package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rpe-project/engine/simulation"
)

// TestSimFlags: rpe sim refuses what it cannot simulate, with exit 2, and
// its help prints each default once.
func TestSimFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--hostile", "1.5"},
		{"--hostile", "-0.1"},
		{"--net", "internet"},
		{"--net", "loopback", "--loss", "0.1"},
		{"--net", "loopback", "--latency", "50ms"},
		{"--chunk-size", "1KiB"},
		{"--json", "out.json"}, // --json is a boolean: out.json is a stray argument
	} {
		if code, _, errOut := rpe(t, append([]string{"sim", "--quiet"}, args...)...); code != 2 {
			t.Errorf("rpe sim %q: exit %d (%s), want 2", args, code, errOut)
		}
	}
	_, out, errOut := rpe(t, "sim", "--help")
	help := out + errOut
	if strings.Contains(help, "(default 0 B)") || strings.Count(help, "(default 256") != 1 {
		t.Errorf("help prints a default wrongly or twice:\n%s", help)
	}
}

// TestSimLoopback runs a tiny simulation on real UDP sockets and checks
// the JSON report on stdout and in the --report file.
func TestSimLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a network of engines")
	}
	file := filepath.Join(t.TempDir(), "report.json")
	code, stdout, errOut := rpe(t, "sim", "--net", "loopback", "--nodes", "3", "--size", "200KiB", "--chunk-size", "64KiB",
		"--up", "4MiB", "--timeout", "1m", "--quiet", "--json", "--report", file)
	if code != 0 {
		t.Fatalf("sim: %d %s", code, errOut)
	}
	var rep simulation.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("sim --json: %v\n%s", err, stdout)
	}
	if rep.Net != simulation.Loopback || rep.Completed != 3 || rep.CPUS == nil || *rep.CPUS <= 0 || rep.AddrViolations != 0 {
		t.Fatalf("report: %+v", rep)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), `"cpu_s"`) {
		t.Fatalf("--report file: %v %s", err, b)
	}
}

// TestDemoOutput: with stdout not a terminal, the demo prints its final
// progress line once and says what the publisher's share is of.
func TestDemoOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a network of engines")
	}
	code, stdout, errOut := rpe(t, "demo", "--nodes", "4", "--size", "512KiB")
	if code != 0 {
		t.Fatalf("demo: %d %s", code, errOut)
	}
	if n := strings.Count(stdout, "verified 4/4 nodes"); n != 1 {
		t.Errorf("final progress line printed %d times:\n%s", n, stdout)
	}
	if !strings.Contains(stdout, "from the publisher (") || !strings.Contains(stdout, "× the file)") {
		t.Errorf("the publisher's share does not say what it is of:\n%s", stdout)
	}
	if !strings.Contains(stdout, "all 4 nodes updated") {
		t.Errorf("no summary:\n%s", stdout)
	}
}
