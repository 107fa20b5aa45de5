package registry_test

import (
	"context"
	"testing"

	"github.com/pushsync/pushsync/registry"
)

// TestRecreatedAppGetsANewRevision: an app deleted and created again under
// its name, with other credentials, gets a revision that name never had.
// Workers keep their push clients by app name and revision: were the
// revision counted from 1 again, a worker that had built clients for the
// deleted app's revision 1 would go on pushing with the deleted app's
// credentials.
func TestRecreatedAppGetsANewRevision(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	app := registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: p8(t)}}
	first, err := r.CreateApp(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteApp(ctx, "ios"); err != nil {
		t.Fatal(err)
	}
	app.APNs.KeyID, app.APNs.AuthKey = "XYZ987WVUT", p8(t)
	again, err := r.CreateApp(ctx, app)
	if err != nil {
		t.Fatalf("create the app again after deleting it: %v", err)
	}
	if again.Revision <= first.Revision {
		t.Fatalf("app created again has revision %d, the deleted one had %d: want a higher one", again.Revision, first.Revision)
	}
	got, err := r.App(ctx, "ios")
	if err != nil || got.Revision != again.Revision || got.APNs.KeyID != "XYZ987WVUT" {
		t.Fatalf("App after creating it again: %+v, %v; want revision %d with key XYZ987WVUT", got, err, again.Revision)
	}
}
