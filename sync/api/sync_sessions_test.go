//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

// TestSyncSessionsCountCountsListingsNotPages lists a dataset page by page
// as the JavaScript and Android SDKs do, following NextToken without
// sending the SyncSessionToken back: the pool's SyncSessionsCount grows by
// one for the listing, not by one per page.
func TestSyncSessionsCountCountsListingsNotPages(t *testing.T) {
	f := newDatasetFixture(t)
	dev := f.developer()
	in := func() *cognitosync.ListRecordsInput {
		return &cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), DatasetName: aws.String("settings")}
	}
	first, err := dev.ListRecords(in())
	if err != nil {
		t.Fatal(err)
	}
	patches := make([]*cognitosync.RecordPatch, 5)
	for i := range patches {
		patches[i] = &cognitosync.RecordPatch{Op: aws.String("replace"), Key: aws.String(fmt.Sprint("k", i)), Value: aws.String("v"), SyncCount: aws.Int64(0)}
	}
	if _, err := dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
		DatasetName: aws.String("settings"), SyncSessionToken: first.SyncSessionToken, RecordPatches: patches}); err != nil {
		t.Fatal(err)
	}
	sessions := func() int64 {
		t.Helper()
		out, err := dev.DescribeIdentityPoolUsage(&cognitosync.DescribeIdentityPoolUsageInput{IdentityPoolId: aws.String(pool)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.Int64Value(out.IdentityPoolUsage.SyncSessionsCount)
	}
	before := sessions()

	pages, records := 0, 0
	var next *string
	var token string
	for {
		req := in()
		req.MaxResults, req.NextToken = aws.Int64(2), next
		out, err := dev.ListRecords(req)
		if err != nil {
			t.Fatal(err)
		}
		pages, records, token = pages+1, records+len(out.Records), aws.StringValue(out.SyncSessionToken)
		if next = out.NextToken; next == nil {
			break
		}
	}
	if pages != 3 || records != 5 || token == "" {
		t.Fatalf("listed %d records in %d pages, last token %q; want 5 in 3 pages and a token", records, pages, token)
	}
	if got := sessions() - before; got != 1 {
		t.Errorf("one listing of 3 pages counted %d sync sessions, want 1", got)
	}
}
