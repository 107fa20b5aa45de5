//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package main

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitoidentity"
)

// TestIdentityPools creates an identity pool with pushsyncctl and gets an
// identity and credentials from it through the AWS SDK's Cognito Identity
// client, as an app does.
func TestIdentityPools(t *testing.T) {
	d := startDaemon(t)
	id := strings.TrimSpace(d.ctl("identitypool", "create", "-name", "Game players", "-region", "eu-west-1", "-allow-unauthenticated"))
	if !strings.HasPrefix(id, "eu-west-1:") || len(id) != len("eu-west-1:")+36 {
		t.Fatalf("pool id %q", id)
	}
	show := d.ctl("identitypool", "show", id)
	if keyValue(t, show, "name") != "Game players" || keyValue(t, show, "unauthenticated identities") != "true" {
		t.Fatalf("show:\n%s", show)
	}
	if list := d.ctl("identitypool", "list"); !strings.Contains(list, id) || !strings.Contains(list, "Game players") {
		t.Fatalf("list:\n%s", list)
	}

	ci := cognitoidentity.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("eu-west-1"), Credentials: credentials.AnonymousCredentials, MaxRetries: aws.Int(0)})))
	got, err := ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ci.GetCredentialsForIdentity(&cognitoidentity.GetCredentialsForIdentityInput{IdentityId: got.IdentityId})
	if err != nil || aws.StringValue(creds.Credentials.AccessKeyId) == "" {
		t.Fatalf("GetCredentialsForIdentity: %+v %v", creds, err)
	}

	// Turn unauthenticated access off: new identities are refused.
	d.ctl("identitypool", "update", id, "-allow-unauthenticated=false", "-oidc-issuer", "https://login.example.com", "-oidc-client-ids", "game-app,game-web")
	show = d.ctl("identitypool", "show", id)
	if keyValue(t, show, "unauthenticated identities") != "false" || !strings.Contains(show, "https://login.example.com (clients game-app,game-web)") {
		t.Fatalf("show after update:\n%s", show)
	}
	if _, err := ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(id)}); err == nil || !strings.Contains(err.Error(), "NotAuthorizedException") {
		t.Fatalf("GetId without a login after unauthenticated access was turned off: %v", err)
	}

	d.ctlFail(d.env, 1, []string{"InvalidParameterException"}, "identitypool", "create", "-name", "bad", "-oidc-issuer", "ftp://x", "-oidc-client-ids", "a")
	d.ctlFail(d.env, 2, []string{"-oidc-issuer needs -oidc-client-ids", "usage: pushsyncctl [global flags] identitypool create"}, "identitypool", "create", "-name", "bad", "-oidc-issuer", "https://x")
	d.ctl("identitypool", "delete", id)
	d.ctlFail(d.env, 1, []string{"ResourceNotFoundException"}, "identitypool", "show", id)
}

// TestIdentityPoolWithItsCognitoID creates a pool with the id of the
// Cognito pool an app was built with, so that the app works against
// pushsync with only its endpoint changed; a pool of that id already there
// and a malformed id are refused, changing nothing.
func TestIdentityPoolWithItsCognitoID(t *testing.T) {
	d := startDaemon(t)
	const cognitoID = "ap-southeast-2:4b1d7e9c-2f3a-4c5b-9d6e-7f8091a2b3c4"
	if id := strings.TrimSpace(d.ctl("identitypool", "create", "-name", "Shipped app", "-id", cognitoID, "-allow-unauthenticated")); id != cognitoID {
		t.Fatalf("created pool %q, want %q", id, cognitoID)
	}
	ci := cognitoidentity.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("ap-southeast-2"), Credentials: credentials.AnonymousCredentials, MaxRetries: aws.Int(0)})))
	got, err := ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(cognitoID)})
	if err != nil {
		t.Fatalf("GetId in the pool of the app's own id: %v", err)
	}
	if !strings.HasPrefix(aws.StringValue(got.IdentityId), "ap-southeast-2:") {
		t.Errorf("identity %q is not in the pool's region", aws.StringValue(got.IdentityId))
	}

	d.ctlFail(d.env, 1, []string{"ResourceConflictException", cognitoID}, "identitypool", "create", "-name", "Second", "-id", cognitoID)
	if name := keyValue(t, d.ctl("identitypool", "show", cognitoID), "name"); name != "Shipped app" {
		t.Errorf("a refused create of the same id renamed the pool to %q", name)
	}
	d.ctlFail(d.env, 1, []string{"InvalidParameterException"}, "identitypool", "create", "-name", "Bad", "-id", "not-a-pool-id")
	if list := d.ctl("identitypool", "list"); strings.Contains(list, "Bad") || strings.Contains(list, "Second") {
		t.Errorf("a refused create left a pool:\n%s", list)
	}
}
