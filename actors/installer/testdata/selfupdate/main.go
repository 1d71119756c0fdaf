// Command selfupdate is a tiny program that updates itself with the
// installer package, built by the installer's tests at several versions. It
// prints one line per step so the test can follow it across execs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rpe-project/engine/actors/installer"
)

// version is set with -ldflags -X.
var version = "0.0.0"

func main() {
	state := flag.String("state", "", "state directory")
	staged := flag.String("update", "", "verified file to install")
	to := flag.String("to", "", "version of the file to install")
	manifest := flag.String("manifest", "", "manifest ID of the file to install")
	attempts := flag.Int("max-attempts", 0, "starts the new version gets")
	crashMode := flag.String("crash", "", `how the version named by -to misbehaves: "boot" (exit before Boot), "trial" (exit before confirming), "unhealthy" (fail its health check) or ""`)
	apply := flag.String("apply", "now", `"now" (swap and exec) or "restart" (swap only; the next start runs the new version)`)
	flag.Parse()
	pid := os.Getpid()
	say := func(format string, a ...any) {
		fmt.Printf("%s pid=%d: %s\n", version, pid, fmt.Sprintf(format, a...))
	}
	fail := func(format string, a ...any) {
		say("error: "+format, a...)
		os.Exit(1)
	}

	crash := ""
	if version == *to {
		crash = *crashMode
	}
	if crash == "boot" {
		say("crash before boot")
		os.Exit(3)
	}
	r, err := installer.Boot(*state, version, time.Now())
	if err != nil {
		fail("boot: %v", err)
	}
	say("boot %s", r.State)
	switch r.State {
	case installer.BootRolledBack:
		if r.Restart {
			err := installer.ExecSelf(r.Pending.Target, os.Args, os.Environ())
			fail("exec old version: %v", err)
		}
	case installer.BootTrial:
		if crash == "trial" {
			say("crash before confirming")
			os.Exit(2)
		}
		if crash == "unhealthy" {
			if err := r.RollBack(errors.New("health check failed"), time.Now()); err != nil {
				fail("roll back: %v", err)
			}
			say("unhealthy, rolled back")
			err := installer.ExecSelf(r.Pending.Target, os.Args, os.Environ())
			fail("exec old version: %v", err)
		}
		if err := r.Confirm(); err != nil {
			fail("confirm: %v", err)
		}
		say("confirmed")
	}
	say("hello %s", version)

	if *staged == "" || *to == version {
		return
	}
	if bad, err := installer.IsFailed(*state, *manifest); err != nil || bad {
		say("refuse %s: failed before (%v)", *manifest, err)
		return
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		fail("executable: %v", err)
	}
	backup := installer.BackupPath(*state, exe)
	p := installer.Pending{
		Version: *to, PreviousVersion: version, ManifestID: *manifest,
		Target: exe, Backup: backup, MaxAttempts: *attempts,
	}
	if _, err := installer.SwapOnTrial(*state, *staged, p); err != nil {
		fail("swap: %v", err)
	}
	if *apply == "restart" {
		// The old version runs on; its engine may boot again meanwhile.
		say("installed %s on restart", *to)
		r, err := installer.Boot(*state, version, time.Now())
		if err != nil {
			fail("boot again: %v", err)
		}
		say("boot again %s, armed %v", r.State, r.Pending != nil && !r.Pending.Deadline.IsZero())
		return
	}
	say("exec %s", *to)
	err = installer.ExecNew(*state, installer.ExecSelf, os.Args, os.Environ(), time.Now())
	fail("exec new version: %v", err)
}
