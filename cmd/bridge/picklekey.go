package main

import (
	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/config"
)

// ensurePickleKey generates encryption.pickle_key into the config file of an
// install that predates encryption (its -g ran before the key existed), so
// that upgrading does not need -g again, which would also replace the
// appservice tokens. Under high availability the instances' config files
// must carry the same key, and one instance cannot write the others': there
// the operator sets it (or DMBRIDGE_PICKLE_KEY), as the warning says.
func ensurePickleKey(cfg *config.Config, log zerolog.Logger) {
	if !cfg.Encryption.Allow || cfg.Encryption.PickleKey != "" {
		return
	}
	if cfg.HA.Enabled {
		log.Warn().Msg("encryption.pickle_key is empty: encrypted rooms are not served. With ha.enabled, set the same " +
			"long random key in every instance's config (or DMBRIDGE_PICKLE_KEY)")
		return
	}
	if err := cfg.SavePickleKey(); err != nil {
		log.Warn().Err(err).Msg("encryption.pickle_key is empty and could not be saved into the config: encrypted " +
			"rooms are not served (set it, or DMBRIDGE_PICKLE_KEY, to a long random string)")
		return
	}
	log.Info().Str("config", cfg.Path).Msg("Generated encryption.pickle_key into the config file: encrypted rooms are served")
}
