package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/api"
)

// TestAdminAppsUnderALostMasterKey reads the platform apps when one was
// sealed under a master key the server does not have: the list shows
// every app, that one marked unreadable, and reading that one says what
// is wrong and how to recover.
func TestAdminAppsUnderALostMasterKey(t *testing.T) {
	f := newFixture(t)
	f.configure()
	lost := registry.New(f.rdb, registry.Options{KeyPrefix: f.prefix, Secrets: secretbox.NewRandom()})
	if _, err := lost.CreateApp(context.Background(), registry.App{Name: "old-android", Kind: registry.KindFCM,
		FCM: &registry.FCMCredentials{ProjectID: "demo", ServiceAccount: serviceAccount}}); err != nil {
		t.Fatal(err)
	}

	var list struct {
		Apps []json.RawMessage
	}
	f.admin("GET", "/admin/v1/apps", "", http.StatusOK, &list)
	if len(list.Apps) != 3 {
		t.Fatalf("apps: %s, want game-android, game-ios and old-android", list.Apps)
	}
	for _, raw := range list.Apps {
		var a struct {
			Name, Kind, Unreadable string
		}
		var members map[string]any
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &members); err != nil {
			t.Fatal(err)
		}
		switch {
		case a.Name == "old-android" && (a.Unreadable == "" || !strings.Contains(a.Unreadable, "register its credentials again")):
			t.Errorf("old-android: %s, want it marked unreadable with how to recover", raw)
		case a.Name == "old-android":
			// Its kind, times and ARNs are sealed with its credentials:
			// unknown, not empty or the year 1.
			for _, m := range []string{"kind", "createdAt", "updatedAt", "applicationArns"} {
				if _, ok := members[m]; ok {
					t.Errorf("old-android: %s, shows %s, which no key here can read", raw, m)
				}
			}
		case a.Unreadable != "" || a.Kind == "" || members["createdAt"] == nil || members["updatedAt"] == nil || members["applicationArns"] == nil:
			t.Errorf("%s: %s, want it whole", a.Name, raw)
		}
	}

	res := f.signed("GET", "/admin/v1/apps/old-android", "", api.AdminService, devKey, devSecret)
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var e struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(data, &e)
	if res.StatusCode != http.StatusBadRequest || e.Type != "InvalidConfigurationException" ||
		!strings.Contains(e.Message, "old-android") || !strings.Contains(e.Message, "master key") || !strings.Contains(e.Message, "pushsyncctl app rotate") {
		t.Errorf("GET the unreadable app: %d %s, want 400 InvalidConfigurationException saying why and how to recover", res.StatusCode, data)
	}
}
