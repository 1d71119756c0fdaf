package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/units"
)

func statusCommand() *command {
	return &command{
		name:    "status",
		args:    "--pubkey KEY [--app A] [--secret FILE] [--stale-after D] [--bootstrap HOST:PORT,...]",
		summary: "Show what a publisher's record names: per app, channel and platform the version, manifest ID, size, record age and peers seeding.",
		run:     runStatus,
	}
}

// StatusEntry is one line of `rpe status --json`.
type StatusEntry struct {
	App        string `json:"app"`
	Channel    string `json:"channel"`
	Platform   string `json:"platform"`
	Version    string `json:"version"`
	ManifestID string `json:"manifest_id"`
	Size       int64  `json:"size"`
	Peers      int    `json:"peers"`
	// Expires is when the record stops vouching for the entry; absent for
	// entries without exp=.
	Expires *time.Time `json:"expires,omitempty"`
	Expired bool       `json:"expired"`
	// Rollout is the staged-rollout percentage; absent when all nodes
	// take the release.
	Rollout int `json:"rollout,omitempty"`
}

func runStatus(ctx context.Context, e *env, args []string) error {
	c := e.cmds["status"]
	fs := newFlags(e, c)
	pubkey := fs.String("pubkey", "", "the publisher's public `KEY` (52 characters)")
	app := fs.String("app", "", "show only this app")
	secretFile := addSecretFlag(fs)
	staleAfter := fs.Duration("stale-after", 7*24*time.Hour, "call the record stale when it was signed longer ago than this")
	peersTimeout := fs.Duration("peers-timeout", 3*time.Second, "how long to look for peers of each release")
	nf := addNetFlags(fs)
	of := addOutFlags(fs)
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos); err != nil {
		return err
	}
	empty := ""
	tf := targetFlags{pubkey: pubkey, app: app, channel: new(string), platform: &empty}
	*tf.channel = "stable"
	if err := tf.check(false); err != nil {
		return err
	}
	boot, err := nf.bootstrapList()
	if err != nil {
		return err
	}
	ldht, lquic, err := nf.listenAddrs()
	if err != nil {
		return err
	}
	secret, err := sharedSecret(*secretFile)
	if err != nil {
		return err
	}
	l, err := engine.Lookup(ctx, engine.LookupConfig{
		SharedSecret: secret,
		PublisherKey: *pubkey, CountPeers: true, PeersTimeout: *peersTimeout,
		Bootstrap: boot, ListenDHT: ldht, ListenQUIC: lquic, Logger: of.logger(e),
	})
	if err != nil {
		return explain(err)
	}
	var shown []engine.ListedEntry
	var names []string
	for _, en := range l.Entries {
		names = append(names, en.Target().String())
		if *app == "" || en.App == *app {
			shown = append(shown, en)
		}
	}
	if len(shown) == 0 {
		if *app != "" {
			return fmt.Errorf("%v %q; the record names %s; check --app", engine.ErrUnknownApp, *app, strings.Join(names, ", "))
		}
		return fmt.Errorf("the record of %s names no release", *pubkey)
	}
	signed := l.Packet.Time()
	now := time.Now()
	stale := *staleAfter > 0 && now.Sub(signed) > *staleAfter
	if *of.json {
		out := struct {
			PublicKey string        `json:"public_key"`
			Seq       int64         `json:"seq"`
			Signed    time.Time     `json:"signed"`
			AgeS      float64       `json:"age_s"`
			Stale     bool          `json:"stale"`
			Entries   []StatusEntry `json:"entries"`
		}{PublicKey: *pubkey, Seq: l.Packet.Seq, Signed: signed.UTC(), AgeS: now.Sub(signed).Seconds(), Stale: stale}
		for _, en := range shown {
			se := StatusEntry{App: en.App, Channel: en.Channel, Platform: en.Platform, Version: en.Version.String(),
				ManifestID: en.ManifestID.String(), Size: en.Size, Peers: en.Peers, Expired: en.Expired(now), Rollout: en.Rollout}
			if !en.Expires.IsZero() {
				exp := en.Expires.UTC()
				se.Expires = &exp
			}
			out.Entries = append(out.Entries, se)
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(e.stdout, "record of %s\nsigned %s (%s ago), seq %d\n", *pubkey,
		signed.UTC().Format("2006-01-02 15:04:05 UTC"), age(now.Sub(signed)), l.Packet.Seq)
	if stale {
		fmt.Fprintf(e.stdout, "STALE: signed more than %s ago: the publisher has not re-signed its record, or this lookup sees an old copy\n", age(*staleAfter))
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tCHANNEL\tPLATFORM\tVERSION\tSIZE\tPEERS\tEXPIRES\tMANIFEST ID")
	for _, en := range shown {
		exp := "-"
		if !en.Expires.IsZero() {
			exp = en.Expires.UTC().Format("2006-01-02")
			if en.Expired(now) {
				exp += " EXPIRED"
			}
		}
		version := en.Version.String()
		if en.Rollout > 0 && en.Rollout < 100 {
			version += fmt.Sprintf(" (rollout %d%%)", en.Rollout)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", en.App, en.Channel, en.Platform, version,
			units.FormatSize(en.Size), en.Peers, exp, en.ManifestID)
	}
	return tw.Flush()
}

// age is a duration rounded for people.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	case d < 48*time.Hour:
		return d.Round(time.Hour).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
