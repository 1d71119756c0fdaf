package cli

import (
	"context"
	"fmt"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/release"
)

func keysCommand() *command {
	return &command{
		name:    "keys",
		args:    "show --key FILE | rotate --key OLD --new NEW [--bootstrap HOST:PORT,...] [--listen ADDR]",
		summary: "Print the 52-character public key of a secret key file, or rotate: move the publisher from key OLD to key NEW with a statement both sign, put into OLD's record.",
		run:     runKeys,
	}
}

func runKeys(ctx context.Context, e *env, args []string) error {
	c := e.cmds["keys"]
	fs := newFlags(e, c)
	key := fs.String("key", "", "secret key `FILE` made by rpe init (rotate: the key to retire)")
	newKey := fs.String("new", "", "rotate: the secret key `FILE` that takes over (made by rpe init)")
	nf := addNetFlags(fs)
	of := addOutFlags(fs)
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("missing subcommand (show or rotate)")
	}
	if pos[0] != "show" && pos[0] != "rotate" {
		return usagef("unknown subcommand %q (want show or rotate)", pos[0])
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
	if pos[0] == "show" {
		fmt.Fprintln(e.stdout, release.PublicKeyOf(sk))
		return nil
	}
	if err := requireFlag("new", *newKey); err != nil {
		return err
	}
	nk, err := release.ReadSecretKeyFile(*newKey)
	if err != nil {
		return fmt.Errorf("--new: %w", err)
	}
	boot, err := nf.bootstrapList()
	if err != nil {
		return err
	}
	ldht, lquic, err := nf.listenAddrs()
	if err != nil {
		return err
	}
	rot, pkt, err := engine.Rotate(ctx, engine.RotateConfig{
		Old: sk, New: nk, Bootstrap: boot, ListenDHT: ldht, ListenQUIC: lquic, Logger: of.logger(e),
	})
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(e.stdout, "rotated %s -> %s (statement of %s, record seq %d)\n", rot.Old, rot.New,
		rot.Time.Format("2006-01-02 15:04:05 UTC"), pkt.Seq)
	fmt.Fprintf(e.stdout, "nodes that trust %s now follow %s and refuse the old key; publish your releases with --key %s\n", rot.Old, rot.New, *newKey)
	return nil
}
