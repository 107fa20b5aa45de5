//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package main

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

// A pool created with the id of a deleted pool whose data was not purged
// does not hand the old pool's users their identities and data back
// unasked: identitypool create refuses, saying to purge or restore, and
// only with -restore are the identity's records there again.
func TestIdentityPoolCreatedAgainRestoresOnlyWhenAsked(t *testing.T) {
	d := startDaemon(t)
	ci := cognitoidentity.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("us-east-1"), Credentials: credentials.AnonymousCredentials, MaxRetries: aws.Int(0)})))
	dev := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("us-east-1"),
		Credentials: credentials.NewStaticCredentials(devKey, devSecret, ""), MaxRetries: aws.Int(0)})))

	d.ctl("identitypool", "update", pool, "-allow-unauthenticated=true")
	got, err := ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(pool)})
	if err != nil {
		t.Fatalf("GetId: %v", err)
	}
	identity := got.IdentityId
	records := func() *cognitosync.ListRecordsOutput {
		t.Helper()
		list, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: identity, DatasetName: aws.String("settings")})
		if err != nil {
			t.Fatalf("ListRecords: %v", err)
		}
		return list
	}
	if _, err := dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: identity,
		DatasetName: aws.String("settings"), SyncSessionToken: records().SyncSessionToken,
		RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("volume"), Value: aws.String("7"), SyncCount: aws.Int64(0)}}}); err != nil {
		t.Fatalf("UpdateRecords: %v", err)
	}

	if out := d.ctl("identitypool", "delete", pool); !strings.Contains(out, "identitypool purge "+pool) || !strings.Contains(out, "-restore") {
		t.Errorf("identitypool delete printed %q, want it to say the data stays until purged or restored", out)
	}
	d.ctlFail(d.env, 1, []string{"ResourceConflictException", pool, "identitypool purge " + pool, "-restore"},
		"identitypool", "create", "-name", "game", "-id", pool)
	if _, err := ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(pool)}); err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("GetId after the refused create: %v, want ResourceNotFoundException: the pool was created", err)
	}
	d.ctlFail(d.env, 2, []string{"-restore needs -id"}, "identitypool", "create", "-name", "game", "-restore")

	if out := d.ctl("identitypool", "create", "-name", "game", "-id", pool, "-restore"); out != pool+"\n" {
		t.Errorf("identitypool create -restore printed %q, want the pool id", out)
	}
	if list := records(); len(list.Records) != 1 || aws.StringValue(list.Records[0].Value) != "7" {
		t.Errorf("after the restore the identity's records are %v, want volume=7 back", list.Records)
	}
	// Restored, the pool is an ordinary one: deleting it marks it again.
	d.ctl("identitypool", "delete", pool)
	d.ctlFail(d.env, 1, []string{"ResourceConflictException"}, "identitypool", "create", "-name", "game", "-id", pool)
}
