package main

import (
	"encoding/json"
	"testing"
	"time"
)

// TestRefusedCredentialsSayWhichWereSent: an operator who evaluated
// credentials issue in a shell and then exported the developer credentials
// again still has the identity's AWS_SESSION_TOKEN, which pushsyncctl sends
// with the developer access key; the API refuses that pair with "The
// security token included in the request is invalid.", so pushsyncctl says
// which key went, from where, with the session token from the environment,
// and that unsetting it is the cure. An access key the API does not know is
// named, with where it came from.
func TestRefusedCredentialsSayWhichWereSent(t *testing.T) {
	d := startDaemon(t)
	var issued struct {
		Credentials struct{ AccessKeyId, SecretKey, SessionToken string }
	}
	if err := json.Unmarshal([]byte(d.ctl("-o", "json", "credentials", "issue", "-pool", pool, "-identity", alice)), &issued); err != nil {
		t.Fatal(err)
	}
	if issued.Credentials.SessionToken == "" {
		t.Fatal("credentials issue gave no session token")
	}

	stale := d.with("AWS_SESSION_TOKEN", issued.Credentials.SessionToken)
	for _, args := range [][]string{{"app", "list"}, {"pool", "show", pool}} {
		d.ctlFail(stale, 1, []string{"pushsyncctl: UnrecognizedClientException: ", "access key " + devKey + " (AWS_ACCESS_KEY_ID)",
			"session token in AWS_SESSION_TOKEN", "unset AWS_SESSION_TOKEN"}, args...)
	}
	d.ctl("app", "list") // unset, the same developer credentials work

	d.ctlFail(d.env, 1, []string{"pushsyncctl: UnrecognizedClientException: ", "the API knows no access key AKIANOSUCHKEY0000000 (-access-key)",
		"api.developer_access_key_id"}, "-access-key", "AKIANOSUCHKEY0000000", "app", "list")
	d.ctlFail(d.with("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000"), 1, []string{"the API knows no access key AKIANOSUCHKEY0000000 (AWS_ACCESS_KEY_ID)"},
		"pool", "show", pool)
}

// TestASkewedClockIsNamed: a request signed on a machine whose clock is
// minutes off the API's is refused with InvalidSignatureException
// "Signature expired" (or "not yet current"), which reads like a credential
// problem; pushsyncctl says the clock is off and to set it right.
func TestASkewedClockIsNamed(t *testing.T) {
	d := startDaemon(t)
	t.Cleanup(func() { clock = time.Now })
	for _, off := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		clock = func() time.Time { return time.Now().Add(off) }
		d.ctlFail(d.env, 1, []string{"pushsyncctl: InvalidSignatureException: Signature ", "this machine's clock is off the API's", "set it right (NTP)"},
			"app", "list")
	}
	clock = time.Now
	d.ctl("app", "list")
}
