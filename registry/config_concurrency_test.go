package registry_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushsync/pushsync/registry"
)

// TestConcurrentConfigChangesAllSucceed runs changes to different apps and
// pools at once: they share the configuration hash, and none of them may
// fail because another one wrote to it meanwhile.
func TestConcurrentConfigChangesAllSucceed(t *testing.T) {
	r, _ := newRegistry(t)
	ctx := context.Background()
	key := p8(t)
	ios := func(name string) registry.App {
		return registry.App{Name: name, Kind: registry.KindAPNs, APNs: &registry.APNsCredentials{
			Topic: "com.example", KeyID: "ABC123DEFG", TeamID: "TEAM123456", AuthKey: key}}
	}
	if _, err := r.CreateApp(ctx, ios("shared")); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := r.CreateApp(ctx, ios(fmt.Sprintf("old-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	poolOf := func(i int) string { return fmt.Sprintf("us-east-1:0f1e2d3c-4b5a-6978-8796-%012d", i) }

	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for i := range n {
		wg.Add(4)
		go func() {
			defer wg.Done()
			if _, err := r.CreateApp(ctx, ios(fmt.Sprintf("new-%d", i))); err != nil {
				errs <- fmt.Errorf("create app new-%d: %w", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			pp := registry.PoolPush{Apps: map[registry.Platform]string{registry.APNS: "shared"}}
			if err := r.SetPoolPush(ctx, poolOf(i), pp); err != nil {
				errs <- fmt.Errorf("set push of pool %d: %w", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := r.BeginBulkPublish(ctx, poolOf(i), time.Minute, time.Hour); err != nil {
				errs <- fmt.Errorf("begin bulk publish of pool %d: %w", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			if i < 4 {
				if err := r.DeleteApp(ctx, fmt.Sprintf("old-%d", i)); err != nil {
					errs <- fmt.Errorf("delete app old-%d: %w", i, err)
				}
			} else if _, err := r.ReplaceApp(ctx, ios("shared")); err != nil {
				errs <- fmt.Errorf("replace app shared: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	apps, err := r.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != n+1 {
		t.Errorf("%d apps after the changes, want %d: %+v", len(apps), n+1, apps)
	}
	for i := range n {
		if _, err := r.PoolPush(ctx, poolOf(i)); err != nil {
			t.Errorf("pool %d: %v", i, err)
		}
		if st, err := r.BulkPublishState(ctx, poolOf(i)); err != nil || st.Status != registry.BulkInProgress {
			t.Errorf("bulk publish of pool %d: %+v, %v", i, st, err)
		}
	}
}
