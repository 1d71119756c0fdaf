package main

import (
	"context"
	"fmt"

	"github.com/rpe-project/engine/release"
)

func init() {
	register(&command{
		name:    "keys",
		args:    "show --key FILE",
		summary: "Print the 52-character public key of a secret key file.",
		run:     runKeys,
	})
}

func runKeys(ctx context.Context, e *env, args []string) error {
	c := commands["keys"]
	fs := newFlags(e, c)
	key := fs.String("key", "", "secret key `FILE` made by rpe init")
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("missing subcommand (show)")
	}
	if pos[0] != "show" {
		return usagef("unknown subcommand %q (want show)", pos[0])
	}
	if err := wantArgs(pos[1:]); err != nil {
		return err
	}
	if err := requireFlag("key", *key); err != nil {
		return err
	}
	sk, err := release.ReadSecretKeyFile(*key)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, release.PublicKeyOf(sk))
	return nil
}
