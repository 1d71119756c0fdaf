// Package installer applies a verified release to the running program: it
// decides when (the apply policy), replaces the executable atomically,
// restarts into it, and puts the previous executable back if the new one
// does not prove healthy.
//
// It owns four things on disk, all described in docs/FORMATS.md, "State
// directory": the backup of the previous executable
// (<StateDir>/backup/<name>), the pending-install marker
// (<StateDir>/install-pending.json), the list of releases that were rolled
// back (<StateDir>/install-failed.json) and the lock that serialises changes
// to them (<StateDir>/install.lock). It trusts the file it is given:
// checking the bytes is the verifier's job, done before.
//
// The plain functions here (Policy, Swap, SwapOnTrial, Rollback, the marker,
// Boot) have no
// goroutines and take the clock as an argument, so they are tested with real
// files and real processes. The installer actor, the stage the engine root
// supervises, lives in this package too and is a thin owner of state around
// them.
//
// # Swap
//
// Swap copies the staged file to a temporary file beside the target (same
// directory, hence same file system, so the rename is atomic), gives it the
// target's mode, fsyncs it, keeps a complete copy of the current target as
// the backup, renames the new file over the target and fsyncs the directory.
// At every instant the target is either the whole old file or the whole new
// one, and on any error it is untouched.
//
// # Apply policy
//
// Now swaps and re-executes at once; OnRestart swaps at once and leaves the
// running process alone; At(hh:mm) swaps and re-executes at the next local
// hh:mm (Policy.NextApply), which handles midnight and clock changes: a time
// the clock skips runs at the jump, a time that occurs twice runs at the
// first occurrence still ahead.
//
// # The trial: states and who moves between them
//
// The trial (the pending-install marker, the backup it names and the list
// of failed releases) has one writer at run time: the installer stage. It
// calls Boot as it first starts, runs the embedding program's health check
// on a goroutine of its own whose only output is a message back to the
// stage, and alone confirms or rolls back. A supervisor that runs the
// program as a child (internal/supervise, used by `rpe node --run`) writes
// nothing: its Exec restarts the child and its HealthCheck reports whether
// the child stayed up, and the stage decides. The plain functions below
// keep their flock for the one case of two processes on one state
// directory (the old process's stage, and the new process's Boot after a
// real exec).
//
//	state          marker on disk                  moved by (function)            to
//	clean          none                            stage: apply → SwapOnTrial     waiting
//	waiting        deadline unarmed or armed,      stage: ExecNew (arms), or the  on trial
//	               new version not yet started     new process's stage: Boot
//	on trial       Attempts ≥ 1, deadline armed    stage: health check passed →   confirmed (clean)
//	                                               Confirm
//	on trial       same                            stage: check failed, deadline  rolled back (clean,
//	                                               or MaxAttempts → RollBack/Boot release listed failed)
//	stale          marker names a file the target  stage: Boot (bootStale)        clean, or rolled back
//	               does not hold (crash mid-swap)                                 if it replaced an
//	                                                                              unconfirmed version
//
// After a rollback the stage restarts into the restored version (Exec): a
// real exec, or the supervisor's restart of its child.
//
// # Health and rollback
//
// A new version is on trial until it confirms that it is healthy, under
// every policy. The steps:
//
//  1. The old process calls SwapOnTrial, which writes the marker and then
//     swaps. The marker names the new file by size and SHA-256, and Boot acts
//     on it only while the target holds exactly that file, so a rollback can
//     never restore a stale backup from an earlier update (see "Crashes").
//  2. Under Now and At it calls ExecNew, which arms the deadline
//     (Pending.HealthTimeout, default 2 minutes) and execs the target with the
//     same argv and environment (ExecSelf, syscall.Exec: same process ID, so a
//     supervisor such as systemd sees no exit). If the exec itself fails (a
//     file the kernel will not run), ExecNew rolls back at once and the old
//     process carries on. Under OnRestart the marker waits with an unarmed
//     deadline and the old process runs on. The deadline is armed by the
//     first start of the target: Boot by the new version, by a supervisor
//     (BeforeLaunch), or by a process of any version but the one the backup
//     holds (PreviousVersion) and the one that installed (InstalledBy, when
//     another). The process that installed, still running or its engine
//     restarted in it, is no start of the new version: its Boot
//     (BootWaiting) leaves an unarmed marker as it is, so however long it
//     runs, nothing rolls back on its account. A misversioned new build,
//     which can never confirm, still arms the trial and is rolled back by
//     the first Boot after its deadline (its next start, a supervisor, any
//     other process); while it runs, nothing stops it sooner. A new build
//     that reports PreviousVersion or InstalledBy is taken for the old
//     process: under OnRestart it arms nothing and runs unconfirmed until
//     another start arms the trial (Boot knows a process by its version
//     only).
//  3. The starting program (the engine, before anything else touches the
//     target) calls Boot with its own version. The new version gets
//     BootTrial: the start is counted on disk first, so a crash right after
//     still counts. Once the engine is up and the embedding program's health
//     check (if any) passes, it calls BootResult.Confirm, which removes the
//     marker. The backup is kept until the next update replaces it.
//  4. A new version that finds itself unhealthy, or is still unconfirmed at
//     Pending.Deadline (the engine keeps a timer), calls BootResult.RollBack
//     and execs the target, which is the old version again.
//  5. A new version that crashes after Boot and is started again (by a
//     supervisor, systemd, or the user) is counted at each Boot; when
//     MaxAttempts (default 3) starts went unconfirmed, or the deadline has
//     passed, the next Boot, whoever runs it, rolls back and returns
//     BootRolledBack with Restart set if the caller runs any version but the
//     restored one (the rejected version, a misversioned build, or an
//     unconfirmed version that installed it): it should exec the target,
//     now the old version.
//
// # Several installs before a restart
//
// The backup is always the last confirmed version. While a marker describes
// the target, the target is unconfirmed, so a further install (say 1.0 runs,
// 1.1 was swapped in on restart, then 1.2 arrives) keeps the backup (1.0)
// instead of copying the never-confirmed target (1.1) over it, and writes a
// marker for 1.2 whose PreviousVersion is the old marker's (1.0), with
// ReplacedUnconfirmed set. 1.1 is dropped and not listed as failed: it did
// not fail, it was superseded. If 1.2 fails its trial, 1.0 comes back. The
// same holds when 1.1, running on trial, installs 1.2 (InstalledBy 1.1).
// 1.1 then cannot confirm (it is not what the target holds), but until 1.2
// first starts it can still roll back: 1.0 comes back, 1.1 is listed as
// failed and 1.2 is dropped.
//
// # Crashes
//
// SwapOnTrial writes the marker before the swap, and the swap renames the
// new file into place as its last step. A crash before that rename leaves
// the old target with a marker that names another file: Boot finds it stale
// (ErrStalePending). If the install had replaced a confirmed version, the
// target still is that version: the marker is removed and the start is
// clean. If it had replaced an unconfirmed one (ReplacedUnconfirmed), the
// target holds a version that was never confirmed, so Boot puts the backup
// back, as for a failed trial but without listing any release as failed. A
// crash after the rename leaves a complete trial. So no new version ever runs
// without a trial, and no rollback restores anything but the last confirmed
// version. The same check covers a rollback that died after it restored the
// target: the marker is stale, and as it counts starts of the new version,
// Boot lists the release as failed before removing it.
//
// Every rolled-back release is listed by manifest ID; the engine asks
// IsFailed before installing a release, so a node does not fetch, install
// and roll back the same broken release forever. The publisher fixes a bad
// release by publishing a new one.
//
// # Limits
//
// A new binary that dies before it reaches Boot (a panic during package
// initialisation, a missing shared library, an instruction the CPU lacks)
// never runs this code, so it cannot roll itself back. Under a supervisor
// that calls BeforeLaunch before each start, the deadline armed by ExecNew
// ends the trial and the supervisor restores the backup (under `rpe node
// --run` the stage runs the child's trial: the child exiting early fails
// its health check, and the stage rolls back). With self-exec alone and no supervisor, such a process is
// simply gone: nothing restarts it, and the backup waits in the state
// directory for a human (`cp <StateDir>/backup/<name> <target>`). A new
// version that hangs without ever reaching the engine's timer is likewise
// only caught by a supervisor that restarts it.
//
// One state directory belongs to one installing process. Within it, Boot,
// Confirm, RollBack, SwapOnTrial and ExecNew each hold an flock on
// <StateDir>/install.lock while they read, decide and write, so two
// processes on one state directory (the old process and the new one after
// an exec, or a supervisor's BeforeLaunch and its child) take turns; where flock is
// missing (not Linux, macOS or a BSD) nothing serialises them. Swap
// replaces a regular file only; callers resolve symlinks first
// (engine.Config.Target does).
//
// The state directory is trusted local storage (docs/SECURITY.md): its
// files are checked for form, not for intent. A marker names its own target
// and backup by absolute path, so whoever can write it can have Boot copy
// any file it can read over any file the process can write; that is no more
// than such a writer can do already, by replacing the backup that a
// rollback restores over the target. Keep the state directory writable by
// the updating user only.
//
// The deadline is wall-clock time, so a large clock step at boot can end a
// trial early. This package targets Unix: on systems without exec
// (Windows) ExecSelf returns ErrExecUnsupported, and renaming over a
// running executable is refused there anyway.
package installer
