package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rpe-project/engine/internal/units"
	"github.com/rpe-project/engine/release"
)

// ManifestExt is appended to an artifact's name to name its signed manifest.
const manifestExt = ".rpem"

func signCommand() *command {
	return &command{
		name:     "sign",
		artifact: true,
		args:     "ARTIFACT --key FILE --version V [--app A] [--channel C] [--platform P] [--chunk-size N] [--chunking fixed|content] [--expires DURATION]",
		summary:  "Sign an artifact: write its manifest to ARTIFACT.rpem and print the manifest ID.",
		run:      runSign,
	}
}

func runSign(ctx context.Context, e *env, args []string) error {
	c := e.cmds["sign"]
	fs := newFlags(e, c)
	key := fs.String("key", "", "secret key `FILE` made by rpe init")
	version := fs.String("version", "", "semantic `version` of the artifact, e.g. 1.2.3")
	app := fs.String("app", "", "app `name` (default: the artifact's file name up to the first dot, lower-cased)")
	channel := fs.String("channel", release.DefaultChannel, "release `channel`")
	platform := fs.String("platform", release.DefaultPlatform(), "`platform` the artifact runs on, GOOS-GOARCH")
	cf := addChunkFlags(fs)
	expires := fs.String("expires", "90d", "how long the manifest stays valid, e.g. 90d, 36h")
	out := fs.String("out", "", "write the manifest to `FILE` (default ARTIFACT.rpem)")
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, "ARTIFACT"); err != nil {
		return err
	}
	if err := requireFlag("key", *key); err != nil {
		return err
	}
	if err := requireFlag("version", *version); err != nil {
		return err
	}
	artifact := pos[0]
	if _, err := release.ParseVersion(*version); err != nil {
		return usageError{fmt.Errorf("--version: %w", err)}
	}
	chunkSize, chunker, err := cf.parse()
	if err != nil {
		return err
	}
	life, err := units.ParseDuration(*expires)
	if err != nil {
		return usageError{fmt.Errorf("--expires: %w", err)}
	}
	if life <= 0 {
		return usagef("--expires %s: must be positive", *expires)
	}
	if *app == "" {
		*app = release.AppNameOf(artifact)
		if err := release.ValidateName("app", *app); err != nil {
			return usageError{fmt.Errorf("%w; name the app with --app", err)}
		}
	}
	sk, err := release.ReadSecretKeyFile(*key)
	if err != nil {
		return err
	}
	f, err := os.Open(artifact)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", artifact)
	}
	now := time.Now()
	m, err := release.BuildManifest(f, release.BuildOptions{
		App: *app, Channel: *channel, Platform: *platform, Version: *version,
		ChunkSize: chunkSize, Chunker: chunker, Created: now, Expires: now.Add(life),
	})
	if err != nil {
		return fmt.Errorf("%s: %w", artifact, err)
	}
	sm, err := release.SignManifest(m, sk)
	if err != nil {
		return err
	}
	dest := *out
	if dest == "" {
		dest = artifact + manifestExt
	}
	if err := writeFileAtomic(dest, sm.Raw, 0o644); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, sm.ID)
	return nil
}

// chunkFlags are how sign and publish cut an artifact into chunks.
type chunkFlags struct{ size, chunking *string }

func addChunkFlags(fs flagSet) chunkFlags {
	return chunkFlags{
		size:     fs.String("chunk-size", "256KiB", "chunk `size`, 16KiB to 16MiB (with --chunking content: the largest chunk)"),
		chunking: fs.String("chunking", "fixed", "`how` to cut chunks: fixed (every --chunk-size bytes) or content (where the bytes say, 64KiB on average, so the next release shares more chunks with this one; manifest format 2)"),
	}
}

// parse returns the chunk size and chunker the flags name.
func (c chunkFlags) parse() (int, release.Chunker, error) {
	size, err := units.ParseSize(*c.size)
	if err != nil {
		return 0, 0, usageError{fmt.Errorf("--chunk-size: %w", err)}
	}
	if size < release.MinChunkSize || size > release.MaxChunkSize {
		return 0, 0, usagef("--chunk-size %s: must be 16KiB to 16MiB", *c.size)
	}
	chunker, err := release.ParseChunker(*c.chunking)
	if err != nil {
		return 0, 0, usageError{fmt.Errorf("--chunking: %w", err)}
	}
	return int(size), chunker, nil
}
