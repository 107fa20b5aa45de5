package main

import (
	"strings"
	"testing"
)

// Command line mistakes of the dead-letter, identity pool and device
// commands are usage errors, as every other command's are: the message, the
// command's usage, exit status 2, and no request sent. A global flag given after the
// command is named as one.
func TestCommandLineMistakesAreUsageErrors(t *testing.T) {
	// An API that cannot be reached: a command that sent a request would
	// exit 1 saying so.
	env := map[string]string{"PUSHSYNCCTL_ENDPOINT": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "AKIAPUSHSYNCTEST0001", "AWS_SECRET_ACCESS_KEY": "secret"}
	const pool = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"deadletter", "replay", "3", "-all"}, "deadletter replay takes SEQ or -all, not both"},
		{[]string{"deadletter", "replay"}, "deadletter replay needs SEQ or -all"},
		{[]string{"deadletter", "replay", "three"}, `SEQ must be a dead letter's sequence number, a positive integer, got "three"`},
		{[]string{"deadletter", "discard", "1st"}, `SEQ must be a dead letter's sequence number, a positive integer, got "1st"`},
		{[]string{"deadletter", "discard", "0"}, `SEQ must be a dead letter's sequence number, a positive integer, got "0"`},
		{[]string{"identitypool", "create", "-name", "n", "-oidc-client-ids", "app"}, "-oidc-client-ids and -oidc-jwks-url need -oidc-issuer"},
		{[]string{"identitypool", "create", "-name", "n", "-oidc-issuer", "https://login.example.com"}, "-oidc-issuer needs -oidc-client-ids"},
		{[]string{"identitypool", "update", pool, "-name", "n", "-oidc-jwks-url", "https://login.example.com/keys"}, "-oidc-client-ids and -oidc-jwks-url need -oidc-issuer"},
		{[]string{"identitypool", "update", pool, "-name", "n", "-region", "eu-west-1"}, "-region, -id and -restore apply only to identitypool create"},
		{[]string{"identitypool", "update", pool, "-name", "n", "-id", pool}, "-region, -id and -restore apply only to identitypool create"},
		{[]string{"identitypool", "create", "-name", "n", "-id", "eu-west-1:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "-region", "eu-west-1"}, "-id and -region: give one"},
		{[]string{"device", "list", "-pool", pool}, "device list needs -identity"},
		{[]string{"device", "list", "-pool", pool, "-identity", pool, "extra"}, `device list takes no arguments, got "extra"`},
		{[]string{"device", "remove", "-pool", pool, "-identity", pool}, "device remove needs -device"},
		{[]string{"device", "remove", "-device", "5cd28fbe-0000-4000-8000-000000000001"}, "device remove needs -pool, -identity"},
		{[]string{"credentials", "issue", "-pool", pool, "-identity", pool, "-duration", "0"}, "-duration must be from 1m to 12h, got 0s"},
		{[]string{"credentials", "issue", "-pool", pool, "-identity", pool, "-duration", "-1h"}, "-duration must be from 1m to 12h, got -1h0m0s"},
		{[]string{"credentials", "issue", "-pool", pool, "-identity", pool, "-duration", "59s"}, "-duration must be from 1m to 12h, got 59s"},
		{[]string{"credentials", "issue", "-pool", pool, "-identity", pool, "-duration", "13h"}, "-duration must be from 1m to 12h, got 13h0m0s"},
		{[]string{"credentials", "issue", "-pool", pool, "-identity", pool, "-duration", "90.5s"}, "-duration must be whole seconds, such as 15m or 1h, got 1m30.5s"},
		{[]string{"app", "list", "-o", "json"}, "-o is a global flag: give it before the command"},
		{[]string{"deadletter", "list", "-endpoint=http://127.0.0.1:8081"}, "-endpoint is a global flag: give it before the command"},
	} {
		r := ctlEnv(env, tt.args...)
		usage := "usage: pushsyncctl [global flags] " + strings.Join(tt.args[:2], " ")
		if r.code != 2 || !strings.Contains(r.stderr, "pushsyncctl: "+tt.want) || !strings.Contains(r.stderr, usage) || r.stdout != "" {
			t.Errorf("pushsyncctl %s: %s\nwant exit 2, %q and the command's usage", strings.Join(tt.args, " "), r, tt.want)
		}
	}
}

// help with a command it does not know is a usage error, as running that
// command is, rather than every command's usage and exit status 0, which
// reads as if the command existed; help with a command prints its usage.
func TestHelpOfAnUnknownCommand(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"help", "deadletter", "retry"}, `unknown command "deadletter retry"; deadletter takes list, replay, discard`},
		{[]string{"help", "app"}, `unknown command "app"; app takes create, list, show, rotate, delete`},
	} {
		r := ctlEnv(nil, tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, "pushsyncctl: "+tt.want+"\n") || r.stdout != "" {
			t.Errorf("pushsyncctl %s: %s\nwant exit 2 and %q", strings.Join(tt.args, " "), r, tt.want)
		}
	}
	for _, args := range [][]string{{"help", "deadletter", "replay"}, {"help", "help"}} {
		if r := ctlEnv(nil, args...); r.code != 0 || !strings.HasPrefix(r.stdout, "usage: pushsyncctl") || r.stderr != "" {
			t.Errorf("pushsyncctl %s: %s", strings.Join(args, " "), r)
		}
	}
}
