package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// TestRedisPoolTroubleIsNotLoggedOneByOne: while Redis is unreachable,
// go-redis reports every failed dial; the log gets one warning for them
// every 10 s, carrying how many it held back (the others go at debug
// level), rather than a line per command of every worker.
func TestRedisPoolTroubleIsNotLoggedOneByOne(t *testing.T) {
	var buf bytes.Buffer
	redis.SetLogger(newRedisLogger(zerolog.New(&buf).Level(zerolog.DebugLevel)))
	t.Cleanup(func() { redis.SetLogger(newRedisLogger(zerolog.Nop())) })

	c := redis.NewClient(&redis.Options{Addr: freeAddr(t), DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	const commands = 5
	for range commands {
		if err := c.Ping(context.Background()).Err(); err == nil {
			t.Fatal("a ping of a closed port answered")
		}
	}
	warn, debug := 0, 0
	for line := range strings.Lines(buf.String()) {
		switch {
		case strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "failed to dial"):
			warn++
		case strings.Contains(line, `"level":"debug"`) && strings.Contains(line, "failed to dial"):
			debug++
		}
	}
	if warn != 1 || debug < commands-1 {
		t.Fatalf("%d warnings and %d debug lines for %d failed dials, want 1 warning and the rest at debug level:\n%s", warn, debug, commands, buf.String())
	}
}
