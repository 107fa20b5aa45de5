//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package app_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/cognitosync"

	"github.com/pushsync/pushsync/config"
)

// benchStack is pushsyncd (role all) with one identity whose "reader"
// device is subscribed to the datasets the benchmark writes.
func benchStack(b *testing.B, datasets int) (*stack, *cognitosync.CognitoSync, string) {
	b.Helper()
	s := newStack(b)
	s.cfg.Role = config.RoleAll
	s.cfg.API.Listen = "127.0.0.1:0"
	s.cfg.API.DeveloperAccessKeyID = devAccessKey
	s.cfg.API.DeveloperSecretAccessKey = devSecretKey
	s.cfg.Log.Level = "warn"
	s.start()
	ctx := context.Background()
	bench := "us-east-1:be0c0000-2222-3333-4444-555555555555"
	reader, _, err := s.reg.RegisterDevice(ctx, pool, bench, "GCM", "fcm-bench-reader-registration-token")
	if err != nil {
		b.Fatal(err)
	}
	for i := range datasets {
		if err := s.reg.Subscribe(ctx, pool, bench, fmt.Sprintf("bench-%d", i), reader.ID); err != nil {
			b.Fatal(err)
		}
	}
	creds, err := s.reg.IssueCredential(ctx, pool, bench, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	client := cognitosync.New(session.Must(session.NewSession(&aws.Config{
		Endpoint: aws.String("http://" + s.apiAddr), Region: aws.String("us-east-1"), MaxRetries: aws.Int(0),
		Credentials: credentials.NewStaticCredentials(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
	})))
	return s, client, bench
}

// BenchmarkUpdateRecords measures signed UpdateRecords calls through the
// AWS SDK, 8 writers at once, each on its own dataset, and the time from
// UpdateRecords returning to the resulting push reaching the FCM emulator.
//
//	go test -run '^$' -bench UpdateRecords -benchtime 2000x ./cmd/internal/app
func BenchmarkUpdateRecords(b *testing.B) {
	const writers = 8
	s, client, identity := benchStack(b, writers)
	type writer struct {
		dataset   string
		token     *string
		syncCount int64
	}
	ws := make([]*writer, writers)
	for i := range ws {
		ds := fmt.Sprintf("bench-%d", i)
		out, err := client.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(identity), DatasetName: aws.String(ds)})
		if err != nil {
			b.Fatal(err)
		}
		ws[i] = &writer{dataset: ds, token: out.SyncSessionToken}
	}
	var (
		next     atomic.Int64
		mu       sync.Mutex
		returned = map[string]time.Time{} // dataset/syncCount → when UpdateRecords returned
	)
	s.fcm.Reset()
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(writers / 2) // RunParallel starts parallelism × GOMAXPROCS (2 here) goroutines
	var wi atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := ws[int(wi.Add(1)-1)%writers]
		for pb.Next() {
			next.Add(1)
			out, err := client.UpdateRecords(&cognitosync.UpdateRecordsInput{
				IdentityPoolId: aws.String(pool), IdentityId: aws.String(identity), DatasetName: aws.String(w.dataset),
				DeviceId: aws.String("bench-writer"), SyncSessionToken: w.token,
				RecordPatches: []*cognitosync.RecordPatch{{Op: aws.String("replace"), Key: aws.String("score"),
					Value: aws.String(strconv.FormatInt(next.Load(), 10)), SyncCount: aws.Int64(w.syncCount)}},
			})
			if err != nil {
				b.Error(err)
				return
			}
			w.syncCount = aws.Int64Value(out.Records[0].SyncCount)
			mu.Lock()
			returned[w.dataset+"/"+strconv.FormatInt(w.syncCount, 10)] = time.Now()
			mu.Unlock()
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")

	// Every dataset's last state reaches the reader. An older state whose
	// event is handled after a newer one is superseded, not pushed.
	deadline := time.Now().Add(time.Minute)
	for {
		last := map[string]int64{}
		for _, p := range s.fcm.Pushes() {
			n, _ := strconv.ParseInt(p.Data["syncCount"], 10, 64)
			last[p.Data["datasetName"]] = max(last[p.Data["datasetName"]], n)
		}
		done := true
		for _, w := range ws {
			done = done && last[w.dataset] == w.syncCount
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the last states did not all arrive: %v", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pushes := s.fcm.Pushes()
	var lat []time.Duration
	for _, p := range pushes {
		if t0, ok := returned[p.Data["datasetName"]+"/"+p.Data["syncCount"]]; ok {
			lat = append(lat, p.ReceivedAt.Sub(t0))
		}
	}
	b.ReportMetric(float64(b.N-len(pushes)), "superseded")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-push-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-push-ms")
}

// BenchmarkListRecords measures signed ListRecords calls through the AWS
// SDK on a dataset of 100 records of 100 bytes, 8 readers at once.
//
//	go test -run '^$' -bench ListRecords ./cmd/internal/app
func BenchmarkListRecords(b *testing.B) {
	_, client, identity := benchStack(b, 1)
	out, err := client.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(identity), DatasetName: aws.String("bench-0")})
	if err != nil {
		b.Fatal(err)
	}
	var patches []*cognitosync.RecordPatch
	for i := range 100 {
		patches = append(patches, &cognitosync.RecordPatch{Op: aws.String("replace"), Key: aws.String(fmt.Sprintf("key-%03d", i)),
			Value: aws.String(fmt.Sprintf("%0100d", i)), SyncCount: aws.Int64(0)})
	}
	if _, err := client.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(identity),
		DatasetName: aws.String("bench-0"), SyncSessionToken: out.SyncSessionToken, RecordPatches: patches}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			page, err := client.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(identity), DatasetName: aws.String("bench-0")})
			if err != nil || len(page.Records) != 100 {
				b.Errorf("ListRecords: %d records, %v", len(page.Records), err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lists/s")
}
