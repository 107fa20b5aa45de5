package app

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/secretbox"
	"github.com/pushsync/pushsync/internal/testenv"
	"github.com/pushsync/pushsync/registry"
)

// TestREADMEAppsAndDevDemoShareARedis: the README has a newcomer run
// "pushsyncd dev" and then create platform apps with pushsyncctl under a
// master key of their own, on the same Redis. The apps the README creates
// must not be the dev stack's: "app create" would find a record sealed
// under the dev key and refuse it, and the dev stack, started after the
// README's steps, would replace the README's apps with its own.
func TestREADMEAppsAndDevDemoShareARedis(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`pushsyncctl app create -name (\S+)`).FindAllStringSubmatch(string(readme), -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatal("the README creates no platform app with pushsyncctl app create")
	}

	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	devBox, err := secretbox.New([]byte(devMasterKey))
	if err != nil {
		t.Fatal(err)
	}
	dev := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: devBox})
	user := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	seedDevDemo(t, dev) // pushsyncd dev first, as the README has it
	// The kind does not matter here, only the name.
	sa := testenv.ServiceAccount("pushemu")
	created := map[string]registry.App{}
	for _, name := range names {
		app := registry.App{Name: name, Kind: registry.KindFCM, FCM: &registry.FCMCredentials{ProjectID: "pushemu", ServiceAccount: sa}}
		got, err := user.CreateApp(ctx, app)
		if err != nil {
			t.Fatalf("pushsyncctl app create -name %s after pushsyncd dev: %v", name, err)
		}
		created[name] = got
	}

	seedDevDemo(t, dev) // pushsyncd dev again, after the README's steps
	for _, name := range names {
		app, err := user.App(ctx, name)
		if err != nil || app.Revision != created[name].Revision {
			t.Errorf("app %s after pushsyncd dev ran again: revision %d (%v), want %d: the dev stack replaced it", name, app.Revision, err, created[name].Revision)
		}
	}
}

// seedDevDemo seeds the dev stack's demo data into reg, against emulators
// that stop when it returns, as pushsyncd dev does when it starts.
func seedDevDemo(t *testing.T, reg *registry.Registry) {
	t.Helper()
	prod, sandbox, fcmEmu := apnstest.NewServer(), apnstest.NewServer(apnstest.WithEnvironment(apnstest.EnvironmentDevelopment)), fcmtest.NewServer()
	defer prod.Close()
	defer sandbox.Close()
	defer fcmEmu.Close()
	if _, _, err := seedDemo(context.Background(), reg, prod, sandbox, fcmEmu, 4); err != nil {
		t.Fatalf("seed the dev demo: %v", err)
	}
}

// TestDevDemoPoolExists: the dev stack's demo pool is an identity pool, so
// that the developer credentials its log prints work in it, also after
// pushsyncd dev starts again on the same Redis.
func TestDevDemoPoolExists(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	reg := registry.New(rdb, registry.Options{KeyPrefix: prefix, Secrets: secretbox.NewRandom()})
	// The third start follows an operator's deletion of the demo pool,
	// whose data stays until purged.
	for run := range 3 {
		if run == 2 {
			if err := reg.DeleteIdentityPool(context.Background(), DemoPool); err != nil {
				t.Fatal(err)
			}
		}
		seedDevDemo(t, reg)
		p, err := reg.IdentityPool(context.Background(), DemoPool)
		if err != nil || !p.AllowUnauthenticated {
			t.Fatalf("start %d: demo identity pool %+v, %v; want it, allowing unauthenticated identities", run+1, p, err)
		}
	}
}
