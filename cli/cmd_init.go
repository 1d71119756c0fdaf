package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	iofs "io/fs"
	"os"

	"github.com/rpe-project/engine/release"
)

func initCommand() *command {
	return &command{
		name:    "init",
		args:    "--out FILE [--private [--secret-out FILE]]",
		summary: "Create a publisher key: the secret key goes to FILE (mode 0600, never overwritten); --private also makes a private swarm's shared secret.",
		run:     runInit,
	}
}

func runInit(ctx context.Context, e *env, args []string) error {
	c := e.cmds["init"]
	fs := newFlags(e, c)
	out := fs.String("out", "", "write the new secret key to `FILE` (must not exist)")
	private := fs.Bool("private", false, "also make a shared secret for a private swarm (only nodes that have it see and fetch the releases)")
	secretOut := fs.String("secret-out", "", "with --private: write the shared secret to `FILE` (default: the --out FILE with .secret added)")
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
	if *secretOut != "" && !*private {
		return usagef("--secret-out needs --private")
	}
	secretPath := *secretOut
	if *private && secretPath == "" {
		secretPath = *out + ".secret"
	}
	if secretPath != "" {
		// Fail before writing the key rather than leave half a setup.
		if _, err := os.Lstat(secretPath); err == nil {
			return fmt.Errorf("write secret %s: %w (refusing to overwrite a secret)", secretPath, iofs.ErrExist)
		}
	}
	sk, err := release.GenerateSecretKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := release.WriteSecretKeyFile(*out, sk); err != nil {
		return err
	}
	var secret release.Secret
	if secretPath != "" {
		if secret, err = release.GenerateSecret(rand.Reader); err != nil {
			return err
		}
		if err := release.WriteSecretFile(secretPath, secret); err != nil {
			return err
		}
	}
	pub := release.PublicKeyOf(sk)
	fmt.Fprintf(e.stdout, "public key: %s\n", pub)
	fmt.Fprintf(e.stdout, "secret key: %s (keep it secret; back it up)\n", *out)
	if secretPath != "" {
		fmt.Fprintf(e.stdout, "shared secret: %s (give it to your nodes only: rpe node --secret FILE, or RPE_SECRET)\n", secretPath)
	}
	fmt.Fprintf(e.stdout, "paste into your program's engine.Config:\n")
	fmt.Fprintf(e.stdout, "\tPublisherKey: %q,\n", pub.String())
	if secretPath != "" {
		fmt.Fprintf(e.stdout, "\tSharedSecret: %q,\n", secret.String())
	}
	return nil
}
