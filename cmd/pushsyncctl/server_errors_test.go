package main

import (
	"context"
	"regexp"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/testenv"
)

// TestServerErrorsNameTheirRequestID: a server error says "internal
// error; the request id identifies it in the server log", so pushsyncctl
// prints that request id with it, for the admin API and the Cognito Sync
// API alike. Here the error is a real one: a pool record in Redis that
// does not decode.
func TestServerErrorsNameTheirRequestID(t *testing.T) {
	d := startDaemon(t)
	const broken = "us-east-1:0badc0de-0000-4000-8000-000000000001"
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.HSet(context.Background(), d.prefix+":{config}", "ipool:"+broken, "{not a pool").Err(); err != nil {
		t.Fatal(err)
	}
	requestID := regexp.MustCompile(`\(request id [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\)\n$`)
	for _, args := range [][]string{
		{"identitypool", "show", broken}, // the admin API
		{"pool", "show", broken},         // Cognito Sync, through the AWS SDK
	} {
		r := d.ctlFail(d.env, 1, []string{"pushsyncctl: InternalErrorException: ", "request id"}, args...)
		if !requestID.MatchString(r.stderr) {
			t.Errorf("pushsyncctl %v: stderr does not end with the request id of the error:\n%s", args, r.stderr)
		}
	}
}
