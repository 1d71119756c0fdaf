package main

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/rpe-project/engine/release"
)

func init() {
	register(&command{
		name:    "init",
		args:    "--out FILE",
		summary: "Create a publisher key: the secret key goes to FILE (mode 0600, never overwritten).",
		run:     runInit,
	})
}

func runInit(ctx context.Context, e *env, args []string) error {
	c := commands["init"]
	fs := newFlags(e, c)
	out := fs.String("out", "", "write the new secret key to `FILE` (must not exist)")
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos); err != nil {
		return err
	}
	if err := requireFlag("out", *out); err != nil {
		return err
	}
	sk, err := release.GenerateSecretKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := release.WriteSecretKeyFile(*out, sk); err != nil {
		return err
	}
	pub := release.PublicKeyOf(sk)
	fmt.Fprintf(e.stdout, "public key: %s\n", pub)
	fmt.Fprintf(e.stdout, "secret key: %s (keep it secret; back it up)\n", *out)
	fmt.Fprintf(e.stdout, "paste into your program's engine.Config:\n")
	fmt.Fprintf(e.stdout, "\tPublisherKey: %q,\n", pub.String())
	return nil
}
