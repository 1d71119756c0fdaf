package cli

import (
	"fmt"
	"os"

	"github.com/rpe-project/engine/release"
)

// addSecretFlag adds --secret, the shared secret file of a private swarm.
func addSecretFlag(fs flagSet) *string {
	return fs.String("secret", "", "shared secret `FILE` of a private swarm (from rpe init --private; default $RPE_SECRET, the secret's text)")
}

// sharedSecret returns the secret's text from --secret FILE, else from
// $RPE_SECRET, else "" (a public swarm). A file group or others may read is
// refused with the chmod to run.
func sharedSecret(file string) (string, error) {
	if file != "" {
		s, err := release.ReadSecretFile(file)
		if err != nil {
			return "", fmt.Errorf("--secret: %w", err)
		}
		return s.String(), nil
	}
	if v := os.Getenv("RPE_SECRET"); v != "" {
		s, err := release.ParseSecret(v)
		if err != nil {
			return "", fmt.Errorf("RPE_SECRET: %w", err)
		}
		return s.String(), nil
	}
	return "", nil
}
