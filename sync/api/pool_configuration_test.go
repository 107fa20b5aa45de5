//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitosync"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
)

// newTwoServers returns two API servers on the same Redis keys, as two
// processes of one deployment are: other is plain, and hooked reaches
// Redis through a client with hook.
func newTwoServers(t *testing.T, hook redis.Hook) (other, hooked *fixture) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	box := secretbox.NewRandom()
	hrdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	t.Cleanup(func() { hrdb.Close() })
	hrdb.AddHook(hook)
	serve := func(c *redis.Client) *fixture {
		f := &fixture{t: t, rdb: c, prefix: prefix, now: time.Now()}
		f.reg = registry.New(c, registry.Options{KeyPrefix: prefix, Secrets: box})
		srv, err := api.New(f.reg, api.Options{DeveloperAccessKeyID: devKey, DeveloperSecretAccessKey: devSecret}, zerolog.New(zerolog.NewTestWriter(t)), nil)
		if err != nil {
			t.Fatal(err)
		}
		f.ts = httptest.NewServer(srv.Handler())
		t.Cleanup(f.ts.Close)
		return f
	}
	other = serve(rdb)
	createPool(t, other.reg)
	return other, serve(hrdb)
}

// commandHook runs its functions on the commands a client sends.
type commandHook struct {
	// before runs before a command is sent; an error fails the command
	// without sending it.
	before func(cmd redis.Cmder) error
	// after runs after a command is answered.
	after func(cmd redis.Cmder)
}

func (h commandHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h commandHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.before != nil {
			if err := h.before(cmd); err != nil {
				cmd.SetErr(err)
				return err
			}
		}
		err := next(ctx, cmd)
		if h.after != nil {
			h.after(cmd)
		}
		return err
	}
}

func (h commandHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.before != nil {
			for _, cmd := range cmds {
				if err := h.before(cmd); err != nil {
					for _, c := range cmds {
						c.SetErr(err)
					}
					return err
				}
			}
		}
		err := next(ctx, cmds)
		if h.after != nil {
			for _, cmd := range cmds {
				h.after(cmd)
			}
		}
		return err
	}
}

// touches reports whether cmd is one of the named commands and has arg
// among its arguments.
func touches(cmd redis.Cmder, arg string, names ...string) bool {
	if !slices.Contains(names, cmd.Name()) {
		return false
	}
	for _, a := range cmd.Args()[1:] {
		if s, ok := a.(string); ok && s == arg {
			return true
		}
	}
	return false
}

// Two SetIdentityPoolConfiguration calls at once, each changing another
// member of the Cognito Streams setting (through two API processes): the
// one that read the setting before the other wrote it must not write its
// stale copy back over the other's change.
func TestSetPoolConfigurationKeepsAConcurrentChange(t *testing.T) {
	var other *fixture
	var fired atomic.Bool
	var concurrent error
	other, hooked := newTwoServers(t, commandHook{after: func(cmd redis.Cmder) {
		if touches(cmd, "streams:"+pool, "hget", "hmget") && fired.CompareAndSwap(false, true) {
			// Between this call's read and its write, another call
			// enables streaming.
			_, concurrent = other.developer().SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
				IdentityPoolId: aws.String(pool),
				CognitoStreams: &cognitosync.CognitoStreams{StreamingStatus: aws.String("ENABLED")},
			})
		}
	}})
	if _, err := other.developer().SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool),
		CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("events"), StreamingStatus: aws.String("DISABLED")},
	}); err != nil {
		t.Fatal(err)
	}

	set, err := hooked.developer().SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool),
		CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("renamed")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !fired.Load() || concurrent != nil {
		t.Fatalf("the concurrent call did not run in between: ran %v, %v", fired.Load(), concurrent)
	}
	if cs := set.CognitoStreams; cs == nil || aws.StringValue(cs.StreamName) != "renamed" || aws.StringValue(cs.StreamingStatus) != "ENABLED" {
		t.Errorf("answer %+v, want the stream renamed and streaming ENABLED", set.CognitoStreams)
	}
	got, err := other.developer().GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
	if err != nil {
		t.Fatal(err)
	}
	if cs := got.CognitoStreams; cs == nil || aws.StringValue(cs.StreamName) != "renamed" || aws.StringValue(cs.StreamingStatus) != "ENABLED" {
		t.Errorf("stored %+v, want the stream renamed and streaming ENABLED: one of the two changes was lost", got.CognitoStreams)
	}
}

// A SetIdentityPoolConfiguration that fails while writing leaves the
// configuration as it was: push sync and Cognito Streams are written
// together or not at all.
func TestSetPoolConfigurationWritesAllOrNothing(t *testing.T) {
	errDown := errors.New("connection reset by peer")
	other, hooked := newTwoServers(t, commandHook{before: func(cmd redis.Cmder) error {
		if touches(cmd, "streams:"+pool, "hset") {
			return errDown
		}
		return nil
	}})
	other.configure()
	before, err := other.developer().GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
	if err != nil {
		t.Fatal(err)
	}

	_, err = hooked.developer().SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool),
		PushSync:       &cognitosync.PushSync{ApplicationArns: aws.StringSlice([]string{"arn:aws:sns:us-east-1:123456789012:app/GCM/game-android"})},
		CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("events"), StreamingStatus: aws.String("ENABLED")},
	})
	expectErr(t, "a write Redis fails", err, "InternalErrorException", 500)

	after, err := other.developer().GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.StringValueSlice(after.PushSync.ApplicationArns), aws.StringValueSlice(before.PushSync.ApplicationArns); !slices.Equal(got, want) || after.CognitoStreams != nil {
		t.Errorf("after a failed call the configuration is %+v, want it unchanged: %+v", after, before)
	}
}

// A PushSync with only a RoleArn, for a pool that has no platform
// applications, turns nothing on: it is refused with what is missing
// rather than answered with PushSync null as if it had been stored.
func TestSetPoolConfigurationRoleWithoutApplications(t *testing.T) {
	f := newFixture(t)
	dev := f.developer()
	role := "arn:aws:iam::123456789012:role/CognitoPushRole"
	_, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool),
		PushSync:       &cognitosync.PushSync{RoleArn: aws.String(role)},
		CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("events")},
	})
	expectErr(t, "a role without applications", err, "InvalidParameterException", 400)
	if err == nil || !strings.Contains(err.Error(), "PushSync.ApplicationArns") {
		t.Errorf("error %v does not say that PushSync.ApplicationArns are needed", err)
	}
	got, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
	if err != nil || got.PushSync != nil || got.CognitoStreams != nil {
		t.Fatalf("after a refused call: %+v %v, want nothing stored", got, err)
	}

	f.configure()
	set, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{
		IdentityPoolId: aws.String(pool),
		PushSync:       &cognitosync.PushSync{RoleArn: aws.String(role + "2")},
	})
	if err != nil || set.PushSync == nil || aws.StringValue(set.PushSync.RoleArn) != role+"2" || len(set.PushSync.ApplicationArns) != 3 {
		t.Fatalf("a role for a pool with applications: %+v %v", set, err)
	}
}

// A role ARN is 20 to 2048 characters, in CognitoStreams as in PushSync: a
// longer one is refused with what is wrong, and nothing of the call is
// stored; one of 2048 characters is taken.
func TestSetPoolConfigurationRoleARNLength(t *testing.T) {
	f := newFixture(t)
	dev := f.developer()
	role := func(n int) string {
		arn := "arn:aws:iam::123456789012:role/"
		return arn + strings.Repeat("r", n-len(arn))
	}
	for _, tt := range []struct{ name, field string }{{"CognitoStreams", "CognitoStreams.RoleArn"}, {"PushSync", "PushSync.RoleArn"}} {
		in := &cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool),
			CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("events")}}
		if tt.name == "CognitoStreams" {
			in.CognitoStreams.RoleArn = aws.String(role(2049))
		} else {
			in.PushSync = &cognitosync.PushSync{ApplicationArns: []*string{}, RoleArn: aws.String(role(2049))}
		}
		_, err := dev.SetIdentityPoolConfiguration(in)
		expectErr(t, tt.name+" role ARN of 2049 characters", err, "InvalidParameterException", 400)
		if err == nil || !strings.Contains(err.Error(), tt.field+": an IAM role ARN is 20 to 2048 characters, got 2049") {
			t.Errorf("%s role ARN of 2049 characters: %v, want the error to name %s and its length", tt.name, err, tt.field)
		}
		got, err := dev.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool)})
		if err != nil {
			t.Fatal(err)
		}
		if got.PushSync != nil || got.CognitoStreams != nil {
			t.Fatalf("after a refused %s call: PushSync stored %v, CognitoStreams stored %v; want nothing stored", tt.name, got.PushSync != nil, got.CognitoStreams != nil)
		}
	}
	set, err := dev.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool),
		CognitoStreams: &cognitosync.CognitoStreams{StreamName: aws.String("events"), RoleArn: aws.String(role(2048))}})
	if err != nil || set.CognitoStreams == nil || aws.StringValue(set.CognitoStreams.RoleArn) != role(2048) {
		t.Fatalf("a role ARN of 2048 characters: %+v %v", set, err)
	}
}
