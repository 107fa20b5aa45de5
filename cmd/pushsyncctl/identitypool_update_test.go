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

// TestIdentityPoolUpdateKeepsWhatIsNotGiven: renaming a pool with
// identitypool update -name leaves its sign-in settings as they are, so
// that the app's users can still get identities; each setting changes only
// when its flag is given, and an update that gives none is a usage error.
func TestIdentityPoolUpdateKeepsWhatIsNotGiven(t *testing.T) {
	d := startDaemon(t)
	id := strings.TrimSpace(d.ctl("identitypool", "create", "-name", "Players", "-allow-unauthenticated",
		"-oidc-issuer", "https://login.example.com", "-oidc-client-ids", "game-app"))
	const provider = "https://login.example.com (clients game-app)"
	ci := cognitoidentity.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + d.api), Region: aws.String("us-east-1"), Credentials: credentials.AnonymousCredentials, MaxRetries: aws.Int(0)})))

	show := d.ctl("identitypool", "update", id, "-name", "Game players")
	if keyValue(t, show, "name") != "Game players" || keyValue(t, show, "unauthenticated identities") != "true" || keyValue(t, show, "openid provider 1") != provider {
		t.Fatalf("after a rename:\n%s", show)
	}
	if _, err := ci.GetId(&cognitoidentity.GetIdInput{IdentityPoolId: aws.String(id)}); err != nil {
		t.Fatalf("GetId without a login after the pool was renamed: %v", err)
	}

	show = d.ctl("identitypool", "update", id, "-allow-unauthenticated=false")
	if keyValue(t, show, "name") != "Game players" || keyValue(t, show, "unauthenticated identities") != "false" || keyValue(t, show, "openid provider 1") != provider {
		t.Fatalf("after turning unauthenticated identities off:\n%s", show)
	}
	show = d.ctl("identitypool", "update", id, "-oidc-issuer", "https://id.example.org", "-oidc-client-ids", "web")
	if keyValue(t, show, "unauthenticated identities") != "false" || keyValue(t, show, "openid provider 1") != "https://id.example.org (clients web)" {
		t.Fatalf("after replacing the provider:\n%s", show)
	}
	show = d.ctl("identitypool", "update", id, "-no-oidc", "-allow-unauthenticated")
	if keyValue(t, show, "unauthenticated identities") != "true" || strings.Contains(show, "openid provider") {
		t.Fatalf("after removing the providers:\n%s", show)
	}

	d.ctlFail(d.env, 2, []string{"identitypool update needs at least one of", "usage: pushsyncctl [global flags] identitypool update"}, "identitypool", "update", id)
	d.ctlFail(d.env, 2, []string{"-no-oidc and -oidc-issuer"}, "identitypool", "update", id, "-no-oidc", "-oidc-issuer", "https://x.example", "-oidc-client-ids", "a")
	d.ctlFail(d.env, 1, []string{"ResourceNotFoundException"}, "identitypool", "update", "us-east-1:00000000-0000-4000-8000-000000000000", "-name", "n")
}
