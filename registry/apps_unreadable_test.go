package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// TestAppsListsAnUnreadableApp lists the apps when one record was sealed
// under a master key the registry does not have: the others are listed
// whole, that one by name, revision and why it cannot be read.
func TestAppsListsAnUnreadableApp(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	lost := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	r := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	if _, err := lost.CreateApp(ctx, registry.App{Name: "android", Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: serviceAccount}}); err != nil {
		t.Fatal(err)
	}
	ios := registry.App{Name: "ios", Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: p8(t)}}
	if _, err := r.CreateApp(ctx, ios); err != nil {
		t.Fatal(err)
	}

	apps, err := r.Apps(ctx)
	if err != nil {
		t.Fatalf("Apps with one unreadable record: %v", err)
	}
	if len(apps) != 2 {
		t.Fatalf("Apps: %+v, want android and ios", apps)
	}
	if a := apps[0]; a.Name != "android" || a.Revision != 1 || !errors.Is(a.Unreadable, registry.ErrAppUnreadable) || a.FCM != nil || a.Kind != "" {
		t.Errorf("the unreadable app: %+v", a)
	}
	if a := apps[1]; a.Name != "ios" || a.Unreadable != nil || a.APNs == nil || a.APNs.AuthKey != ios.APNs.AuthKey {
		t.Errorf("the readable app: %+v", a)
	}
	if _, err := r.App(ctx, "android"); !errors.Is(err, registry.ErrAppUnreadable) {
		t.Errorf("App of the unreadable record: %v, want ErrAppUnreadable", err)
	}
}
