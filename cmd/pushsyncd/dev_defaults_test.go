package main

import (
	"testing"

	"github.com/pushsync/pushsync/config"
)

// TestDevDefaults: `pushsyncd dev` without a configuration file logs for a
// person and keeps its demo data under a key prefix of its own, out of the
// way of what a newcomer then sets up on the same Redis under another
// master key (its demo apps would show there as unreadable); the
// environment still decides.
func TestDevDefaults(t *testing.T) {
	cfg := config.Default()
	devDefaults(cfg, nil)
	if cfg.Log.Format != "console" || cfg.Redis.KeyPrefix != devKeyPrefix {
		t.Fatalf("log format %q, key prefix %q; want console, %s", cfg.Log.Format, cfg.Redis.KeyPrefix, devKeyPrefix)
	}
	if devKeyPrefix == config.Default().Redis.KeyPrefix {
		t.Fatalf("the dev stack's key prefix is the default one, %q", devKeyPrefix)
	}

	env := []string{"PUSHSYNC_LOG_FORMAT=json", "PUSHSYNC_REDIS_KEY_PREFIX=mine"}
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	devDefaults(cfg, env)
	if cfg.Log.Format != "json" || cfg.Redis.KeyPrefix != "mine" {
		t.Fatalf("log format %q, key prefix %q; want those of the environment, json and mine", cfg.Log.Format, cfg.Redis.KeyPrefix)
	}
}
