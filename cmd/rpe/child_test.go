package main

import (
	"io"
	"os/exec"
	"testing"
	"time"
)

// TestChildStartsOnce: rpe node's first start and an engine restart can
// race; a start while the child runs must not start a second one.
func TestChildStartsOnce(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	c := &child{argv: []string{sleep, "60"}, stdout: io.Discard, stderr: io.Discard, exited: make(chan error, 1)}
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	defer c.stop(5 * time.Second)
	first := c.pid()
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	if c.pid() != first {
		t.Fatalf("a second start replaced child %d with %d", first, c.pid())
	}
	if err := c.restart(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if c.pid() == first {
		t.Fatal("restart kept the old child")
	}
}
