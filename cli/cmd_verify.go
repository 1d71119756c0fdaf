package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rpe-project/engine/internal/units"
	"github.com/rpe-project/engine/release"
)

func verifyCommand() *command {
	return &command{
		name:    "verify",
		args:    "ARTIFACT --pubkey KEY [--manifest FILE] [--app A] [--channel C] [--platform P]",
		summary: "Check an artifact against its signed manifest (default ARTIFACT.rpem) and the publisher key.",
		run:     runVerify,
	}
}

func runVerify(ctx context.Context, e *env, args []string) error {
	c := e.cmds["verify"]
	fs := newFlags(e, c)
	pubText := fs.String("pubkey", "", "publisher public `KEY`, 52 characters of z-base-32")
	manifest := fs.String("manifest", "", "signed manifest `FILE` (default ARTIFACT.rpem)")
	app := fs.String("app", "", "require this app `name` (default: any)")
	channel := fs.String("channel", "", "require this `channel` (default: any)")
	platform := fs.String("platform", "", "require this `platform` (default: any)")
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, "ARTIFACT"); err != nil {
		return err
	}
	if err := requireFlag("pubkey", *pubText); err != nil {
		return err
	}
	pub, err := release.ParsePublicKey(*pubText)
	if err != nil {
		return usageError{fmt.Errorf("--pubkey: %w", err)}
	}
	artifact := pos[0]
	if *manifest == "" {
		*manifest = artifact + manifestExt
	}
	sm, err := readManifest(*manifest, pub)
	if err != nil {
		return err
	}
	m := sm.Manifest
	want := m.Target()
	for _, o := range []struct{ flag, dst *string }{{app, &want.App}, {channel, &want.Channel}, {platform, &want.Platform}} {
		if *o.flag != "" {
			*o.dst = *o.flag
		}
	}
	if err := m.Check(want, time.Now()); err != nil {
		return rejected(*manifest, err)
	}
	f, err := os.Open(artifact)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := release.VerifyFile(f, m); err != nil {
		var ce *release.ChunkError
		if errors.As(err, &ce) {
			off := m.ChunkOffset(ce.Index)
			return rejectedError{fmt.Errorf("%s: tampered chunk %d of %d (bytes %d to %d) does not match the manifest",
				artifact, ce.Index, m.NumChunks(), off, off+int64(m.ChunkLen(ce.Index))-1)}
		}
		return rejected(artifact, err)
	}
	fmt.Fprintf(e.stdout, "ok: %s %s for %s/%s, %s in %d chunks, signed by %s, manifest %s, expires %s\n",
		m.App, m.Version, m.Channel, m.Platform, units.FormatSize(m.Size), m.NumChunks(), pub, sm.ID.Short(), m.Expires.Format(time.DateOnly))
	return nil
}

// readManifest reads and checks a signed manifest file as verify and
// publish both do, so the same bad file gives the same error and exit code
// (3) from either.
func readManifest(path string, pub release.PublicKey) (*release.SignedManifest, error) {
	raw, err := readFileLimit(path, release.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	sm, err := release.ParseManifest(raw, pub, release.Limits{})
	if err != nil {
		return nil, rejected(path, err)
	}
	return sm, nil
}

// rejected wraps a verification failure with a plain reason.
func rejected(what string, err error) error {
	var reason string
	switch {
	case errors.Is(err, release.ErrWrongKey):
		reason = "wrong key"
	case errors.Is(err, release.ErrBadSignature):
		reason = "bad signature (manifest altered or corrupt)"
	case errors.Is(err, release.ErrNotSemver):
		reason = "not semver"
	case errors.Is(err, release.ErrMalformed):
		reason = "malformed manifest"
	case errors.Is(err, release.ErrNotYetValid):
		reason = "not yet valid"
	case errors.Is(err, release.ErrWrongTarget):
		reason = "wrong target"
	case errors.Is(err, release.ErrFileHash):
		reason = "file hash mismatch"
	}
	if reason == "" || strings.Contains(err.Error(), reason) {
		return rejectedError{fmt.Errorf("%s: %w", what, err)}
	}
	return rejectedError{fmt.Errorf("%s: %s: %w", what, reason, err)}
}
