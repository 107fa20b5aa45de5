// Command pushsyncd is the pushsync daemon. It consumes dataset-change events
// from NATS JetStream and sends silent APNs and FCM pushes to the other
// devices of the identity (role worker), serves the Cognito Sync, Cognito
// Identity and admin APIs (role api), both (role all), or runs a whole local
// stack with embedded NATS and the push service emulators (role dev).
//
//	pushsyncd [-config file] [worker|api|all|dev|adopt]
//
// adopt does not run a role: it adopts into the sweep indexes the work a
// version without them left in Redis, scanning the keyspace again although
// that was done once already (app.Adopt), and exits; run it once the last
// process of such a version has stopped.
//
// The configuration comes from the file named by -config or PUSHSYNC_CONFIG,
// then PUSHSYNC_* environment variables; deploy/pushsyncd.example.yaml lists
// every key. A role given as an argument overrides the configured one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/app"
	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/internal/loglimit"
)

func main() {
	tuneGC()
	os.Exit(run(os.Args[1:], os.Environ(), os.Stderr))
}

// defaultGCPercent is the collector's target when GOGC is not set. A push
// allocates a few kilobytes that die at once, over a live heap of a few
// megabytes; with Go's default of 100 the collector runs every few
// milliseconds at full load and costs about a quarter of the worker's CPU.
// At 300 it runs a third as often, for some tens of megabytes more
// (docs/performance.md). GOGC and GOMEMLIMIT in the environment override
// it; containers should set GOMEMLIMIT a little under their memory limit.
const defaultGCPercent = 300

func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// devKeyPrefix is the dev stack's Redis key prefix when neither a
// configuration file nor PUSHSYNC_REDIS_KEY_PREFIX names one.
const devKeyPrefix = "pushsync-dev"

// devDefaults adapts the defaults to `pushsyncd dev` run without a
// configuration file, where the environment does not say otherwise.
func devDefaults(cfg *config.Config, env []string) {
	if lookup(env, "PUSHSYNC_LOG_FORMAT") == "" {
		cfg.Log.Format = "console" // a person is watching
	}
	if lookup(env, "PUSHSYNC_REDIS_KEY_PREFIX") == "" {
		// Its demo apps, sealed under the dev stack's own key, stay out
		// of the way of what a newcomer then sets up on the same Redis
		// under a master key of their own.
		cfg.Redis.KeyPrefix = devKeyPrefix
	}
}

func run(args, env []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("pushsyncd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: $PUSHSYNC_CONFIG, else built-in defaults)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pushsyncd [-config file] [worker|api|all|dev|adopt]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // asked for the usage, and given it
		}
		return 2
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	if *path == "" {
		*path = lookup(env, "PUSHSYNC_CONFIG")
	}
	cfg, err := config.Load(*path, env)
	if err != nil {
		fmt.Fprintln(stderr, "pushsyncd:", err)
		return 1
	}
	adopt := fs.Arg(0) == "adopt"
	if fs.NArg() == 1 && !adopt {
		cfg.Role = fs.Arg(0)
		if cfg.Role == config.RoleDev && *path == "" {
			devDefaults(cfg, env)
		}
	}
	log, err := app.NewLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "pushsyncd:", err)
		return 1
	}
	// go-redis reports pool trouble through a process-wide logger.
	redis.SetLogger(newRedisLogger(log.With().Str("component", "redis").Logger()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal starts a graceful stop; with the handler gone,
		// a second one ends the process at once, drain or not.
		<-ctx.Done()
		stop()
	}()
	if adopt {
		if err := app.Adopt(ctx, cfg, log); err != nil {
			fmt.Fprintln(stderr, "pushsyncd adopt:", err)
			return 1
		}
		return 0
	}
	opts := app.Options{Logger: &log}
	if lookup(env, "PUSHSYNC_TEST_KILL_AFTER_COMMIT") == "1" {
		// Fault injection for the test that proves a change committed but
		// not yet published is published after a crash.
		opts.AfterCommit = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	if err := app.Run(ctx, cfg, opts); err != nil {
		fmt.Fprintln(stderr, "pushsyncd:", err)
		return 1
	}
	return 0
}

// redisLogEvery is how often one kind of go-redis report is logged as a
// warning; the others in between go at debug level.
const redisLogEvery = 10 * time.Second

// redisLogger writes go-redis's reports of pool trouble to the log. While
// Redis is unreachable it reports every failed dial of every command, so
// one warning per kind of report (its format) goes out every redisLogEvery,
// with similar_not_logged counting the others since the last one.
type redisLogger struct {
	log   zerolog.Logger
	limit *loglimit.Limiter[string]
}

func newRedisLogger(log zerolog.Logger) redisLogger {
	return redisLogger{log: log, limit: loglimit.New[string](redisLogEvery)}
}

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.limit.Event(l.log, zerolog.WarnLevel, format, time.Now()).Msgf(format, v...)
}

func lookup(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}
