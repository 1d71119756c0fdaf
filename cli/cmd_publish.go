package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/units"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

func publishCommand() *command {
	return &command{
		name:     "publish",
		artifact: true,
		args:     "ARTIFACT --key FILE (--version V | --manifest FILE.rpem) [--app A] [--channel C] [--platform P] [--expires D] [--force] [--secret FILE] [--bootstrap HOST:PORT,...] [--listen ADDR]",
		summary:  "Sign an artifact (or take its signed manifest), put the record in the DHT and seed it until interrupted.",
		run:      runPublish,
	}
}

// netFlags are the network flags every networked command shares.
type netFlags struct {
	bootstrap, listen, stateDir *string
}

// bootstrapUsage is --bootstrap's help, the same in every command.
const bootstrapUsage = "comma-separated DHT starting nodes `HOST:PORT` (default $RPE_BOOTSTRAP, else the public Mainline routers)"

func addNetFlags(fs flagSet) netFlags {
	return netFlags{
		bootstrap: fs.String("bootstrap", "", bootstrapUsage),
		listen:    fs.String("listen", "", "UDP `ADDR` for the DHT socket, e.g. 127.0.0.1:6881 (default all interfaces, any port); QUIC uses the same host"),
		stateDir:  fs.String("state-dir", "", "state `DIR` (default: under the user's cache directory, or temporary for publish and fetch)"),
	}
}

// flagSet is the part of *flag.FlagSet the helpers use.
type flagSet interface {
	String(name, value, usage string) *string
}

// bootstrapList returns --bootstrap, or $RPE_BOOTSTRAP when the flag is
// empty; nil means the public routers.
func (n netFlags) bootstrapList() ([]string, error) {
	list, what := *n.bootstrap, "--bootstrap"
	if list == "" {
		list, what = os.Getenv("RPE_BOOTSTRAP"), "RPE_BOOTSTRAP"
	}
	if list == "" {
		return nil, nil
	}
	var out []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, usagef("%s %q: want HOST:PORT[,HOST:PORT...]", what, a)
		}
		if what == "RPE_BOOTSTRAP" && a == *n.listen {
			continue // a node does not bootstrap from itself (rpe dht-node --listen $RPE_BOOTSTRAP)
		}
		out = append(out, a)
	}
	return out, nil
}

// listenAddrs returns the DHT and QUIC listen addresses for --listen.
func (n netFlags) listenAddrs() (dht, quic string, err error) {
	if *n.listen == "" {
		return "", "", nil
	}
	host, _, err := net.SplitHostPort(*n.listen)
	if err != nil {
		return "", "", usagef("--listen %q: want HOST:PORT", *n.listen)
	}
	return *n.listen, net.JoinHostPort(host, "0"), nil
}

// keyFile returns --key, or RPE_KEY when the flag is empty.
func keyFile(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv("RPE_KEY")
}

func runPublish(ctx context.Context, e *env, args []string) error {
	c := e.cmds["publish"]
	fs := newFlags(e, c)
	key := fs.String("key", "", "secret key `FILE` (default $RPE_KEY)")
	secretFile := addSecretFlag(fs)
	version := fs.String("version", "", "semantic `version` of the artifact")
	manifest := fs.String("manifest", "", "publish this signed manifest `FILE` (from rpe sign) instead of signing")
	app := fs.String("app", "", "app `name` (default: the artifact's file name up to the first dot, lower-cased)")
	channel := fs.String("channel", release.DefaultChannel, "release `channel`")
	platform := fs.String("platform", release.DefaultPlatform(), "`platform`, GOOS-GOARCH")
	expires := fs.String("expires", "90d", "how long the manifest stays valid, e.g. 90d, 36h")
	force := fs.Bool("force", false, "publish even if the record names the same or a newer version")
	rollout := fs.Int("rollout", 0, "staged rollout: the `percent` (1-99) of nodes that take the release; raise it by publishing the same --manifest again with --force (default all)")
	upload := fs.String("upload-rate", "", "cap upload at `RATE` per second, e.g. 4MiB (default unlimited)")
	cf := addChunkFlags(fs)
	nf := addNetFlags(fs)
	of := addOutFlags(fs)
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, "ARTIFACT"); err != nil {
		return err
	}
	kf := keyFile(*key)
	if kf == "" {
		return usagef("missing --key (or set RPE_KEY)")
	}
	if *manifest != "" {
		// The signed manifest names all of these; a flag that disagreed
		// would be silently ignored.
		var both []string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "version", "app", "channel", "platform", "expires", "chunk-size", "chunking":
				both = append(both, "--"+f.Name)
			}
		})
		if len(both) > 0 {
			return usagef("%s with --manifest: the signed manifest names its version, app, channel, platform, expiry and chunks; drop %s or sign again with rpe sign", strings.Join(both, ", "), strings.Join(both, ", "))
		}
	} else {
		if err := requireFlag("version", *version); err != nil {
			return err
		}
		if _, err := release.ParseVersion(*version); err != nil {
			return usageError{fmt.Errorf("--version: %w", err)}
		}
		if *app == "" {
			if err := release.ValidateName("app", release.AppNameOf(pos[0])); err != nil {
				return usageError{fmt.Errorf("%w; the default is the artifact's file name up to the first dot: name the app with --app", err)}
			}
		}
	}
	chunkSize, chunker, err := cf.parse()
	if err != nil {
		return err
	}
	if *rollout < 0 || *rollout > 100 {
		return usagef("--rollout %d: want a percentage, 1..100", *rollout)
	}
	life, err := units.ParseDuration(*expires)
	if err != nil || life <= 0 {
		return usagef("--expires %q: want a positive duration such as 90d or 36h", *expires)
	}
	var rate int64
	if *upload != "" {
		if rate, err = units.ParseSize(*upload); err != nil {
			return usageError{fmt.Errorf("--upload-rate: %w", err)}
		}
	}
	boot, err := nf.bootstrapList()
	if err != nil {
		return err
	}
	ldht, lquic, err := nf.listenAddrs()
	if err != nil {
		return err
	}
	sk, err := readSecretKey(kf)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(pos[0]); err != nil {
		return fmt.Errorf("artifact %s: %w", pos[0], errors.Unwrap(err))
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("artifact %s is not a regular file", pos[0])
	}
	secret, err := sharedSecret(*secretFile)
	if err != nil {
		return err
	}
	pc := engine.PublishConfig{
		SharedSecret: secret,
		Key:          sk, Artifact: pos[0], Version: *version, App: *app, Channel: *channel, Platform: *platform,
		ChunkSize: chunkSize, Chunking: chunker,
		Expires: life, Force: *force, Rollout: *rollout, StateDir: *nf.stateDir, Bootstrap: boot,
		ListenDHT: ldht, ListenQUIC: lquic, UploadRate: rate, Logger: of.logger(e),
	}
	if *manifest != "" {
		sm, err := readManifest(*manifest, release.PublicKeyOf(sk))
		if err != nil {
			return err
		}
		pc.Manifest = sm.Raw
	}
	p, err := engine.Publish(ctx, pc)
	if err != nil {
		return publishError(err, boot)
	}
	man := p.Manifest.Manifest
	st := p.Status()
	if *of.json {
		json.NewEncoder(e.stdout).Encode(map[string]any{
			"event": "published", "public_key": release.PublicKeyOf(sk).String(), "app": man.App, "channel": man.Channel,
			"platform": man.Platform, "version": man.Version.String(), "size": man.Size, "manifest_id": p.Manifest.ID.String(),
			"seq": p.Packet.Seq, "dht": st.DHTAddr, "quic": st.QUICAddr,
		})
	} else {
		fmt.Fprintf(e.stdout, "public key  %s\n", release.PublicKeyOf(sk))
		fmt.Fprintf(e.stdout, "release     %s %s %s %s (%d bytes)\n", man.App, man.Channel, man.Platform, man.Version, man.Size)
		fmt.Fprintf(e.stdout, "manifest ID %s\n", p.Manifest.ID)
		fmt.Fprintf(e.stdout, "seeding on  dht %s, quic %s (Ctrl-C to stop)\n", st.DHTAddr, st.QUICAddr)
	}
	var total int64
	peers := map[string]bool{}
	events := p.Events()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case ev, ok := <-events:
			if !ok {
				break loop
			}
			switch ev := ev.(type) {
			case engine.Served:
				total += int64(ev.Bytes)
				if !peers[ev.Peer] {
					peers[ev.Peer] = true
					if !*of.quiet && !*of.json {
						fmt.Fprintf(e.stdout, "serving peer %s\n", ev.Peer)
					}
				}
			case engine.Failed:
				fmt.Fprintf(e.stderr, "rpe: publish: %s: %v\n", ev.Stage, ev.Err)
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.Stop(sctx)
	copies := float64(total) / float64(max(man.Size, 1))
	if *of.json {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"event": "stopped", "uploaded": total, "copies": copies, "peers": len(peers)})
	}
	fmt.Fprintf(e.stdout, "uploaded %d bytes (%.2f copies) to %d peers\n", total, copies, len(peers))
	return nil
}

// readSecretKey reads a secret key file with a one-line error naming the fix.
func readSecretKey(path string) (ed25519.PrivateKey, error) {
	sk, err := release.ReadSecretKeyFile(path)
	switch {
	case err == nil:
		return sk, nil
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("key file %s does not exist; create one with rpe init --out %s, or name yours with --key or RPE_KEY", path, path)
	case errors.Is(err, release.ErrMalformed):
		return nil, fmt.Errorf("key file %s is not an rpe secret key; give the file rpe init wrote (--key or RPE_KEY)", path)
	}
	return nil, err
}

// publishError turns engine.Publish's errors into one line naming the fix.
func publishError(err error, boot []string) error {
	msg := strings.TrimPrefix(err.Error(), "publish: ")
	switch {
	case errors.Is(err, engine.ErrNotNewer):
		// Not a bad command line (exit 2): the command was right, the
		// network's state refused it (exit 1). The engine's message ends
		// with "(use --force)".
		msg = strings.Replace(msg, "give the state dir it was published with or its signed manifest", "give the --state-dir it was published with, or its .rpem with --manifest", 1)
		return errors.New(strings.Replace(msg, " (use --force)", "; publish a higher --version, or pass --force to publish it anyway", 1))
	case errors.Is(err, network.ErrTimedOut):
		return fmt.Errorf("%s; the DHT is slow or churning: try again", msg)
	case errors.Is(err, network.ErrNoNodes), errors.Is(err, network.ErrNoAnswer),
		errors.Is(err, context.DeadlineExceeded) && strings.Contains(msg, "bootstrap"):
		where := "the public Mainline routers"
		if len(boot) > 0 {
			where = strings.Join(boot, ", ")
		}
		return fmt.Errorf("%v at %s; check --bootstrap (is a DHT node such as `rpe dht-node` running there?)", engine.ErrUnreachable, where)
	case errors.Is(err, release.ErrFileHash), errors.Is(err, release.ErrChunkMismatch),
		errors.Is(err, release.ErrTruncated), errors.Is(err, release.ErrTooLong):
		return rejectedError{errors.New(msg)} // the artifact does not match --manifest, as verify says
	case errors.Is(err, release.ErrWrongKey):
		return rejectedError{fmt.Errorf("%s; the manifest was signed with another key: sign it again with this --key", msg)}
	}
	return errors.New(msg)
}
