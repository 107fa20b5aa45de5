package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/registry"
)

// TestAPNsKeyAndTeamIDsAreChecked registers APNs token apps whose key or
// team id cannot be Apple's: each is refused with the field named, and
// nothing is stored.
func TestAPNsKeyAndTeamIDsAreChecked(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	key := p8(t)
	tests := []struct {
		keyID, teamID, want string
	}{
		{"AuthKey_ABC123DEFG", "TEAM123456", `apns.keyId "AuthKey_ABC123DEFG"`},
		{"abc123defg", "TEAM123456", `apns.keyId "abc123defg"`},
		{"ABC123DEFG", "TEAM12345", `apns.teamId "TEAM12345"`},
		{"ABC123DEFG", "TEAM123456 ", `apns.teamId "TEAM123456 "`},
	}
	for _, tt := range tests {
		_, err := r.CreateApp(ctx, registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{
			Topic: "com.example", KeyID: tt.keyID, TeamID: tt.teamID, AuthKey: key}})
		if !errors.Is(err, registry.ErrInvalidApp) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "10 upper-case letters and digits") {
			t.Errorf("key id %q, team id %q: %v, want ErrInvalidApp with %q", tt.keyID, tt.teamID, err, tt.want)
		}
	}
	if _, err := r.App(ctx, "ios"); !errors.Is(err, registry.ErrAppNotFound) {
		t.Fatalf("a refused app was stored: %v", err)
	}
	if _, err := r.CreateApp(ctx, registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{
		Topic: "com.example", KeyID: "2X9R4HXF34", TeamID: "A1B2C3D4E5", AuthKey: key}}); err != nil {
		t.Fatalf("well-formed ids: %v", err)
	}
}
