//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

// TestDatasetDeletedBetweenPages lists a dataset from 0 page by page
// while another device deletes it and writes it again: the pages after
// the deletion say DatasetDeletedAfterRequestedSyncCount, so that the
// SDK drops the records of the first page, which are gone, instead of
// keeping them beside the new ones.
func TestDatasetDeletedBetweenPages(t *testing.T) {
	f := newDatasetFixture(t)
	dev := f.developer()
	list := func(next *string) *cognitosync.ListRecordsOutput {
		t.Helper()
		out, err := dev.ListRecords(&cognitosync.ListRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
			DatasetName: aws.String("settings"), LastSyncCount: aws.Int64(0), MaxResults: aws.Int64(2), NextToken: next})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	write := func(keys ...string) {
		t.Helper()
		var patches []*cognitosync.RecordPatch
		for _, k := range keys {
			patches = append(patches, &cognitosync.RecordPatch{Op: aws.String("replace"), Key: aws.String(k), Value: aws.String("v"), SyncCount: aws.Int64(0)})
		}
		if _, err := dev.UpdateRecords(&cognitosync.UpdateRecordsInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
			DatasetName: aws.String("settings"), SyncSessionToken: list(nil).SyncSessionToken, RecordPatches: patches}); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "b", "c")
	first := list(nil)
	if len(first.Records) != 2 || first.NextToken == nil || aws.BoolValue(first.DatasetDeletedAfterRequestedSyncCount) {
		t.Fatalf("first page %v", first)
	}
	if _, err := dev.DeleteDataset(&cognitosync.DeleteDatasetInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
		DatasetName: aws.String("settings")}); err != nil {
		t.Fatal(err)
	}
	write("x", "y", "z")
	var keys []string
	for next := first.NextToken; next != nil; {
		pg := list(next)
		if !aws.BoolValue(pg.DatasetDeletedAfterRequestedSyncCount) || !aws.BoolValue(pg.DatasetExists) || aws.StringValue(pg.SyncSessionToken) == "" {
			t.Errorf("page after the deletion %v", pg)
		}
		for _, r := range pg.Records {
			keys = append(keys, aws.StringValue(r.Key))
		}
		next = pg.NextToken
	}
	if len(keys) != 3 || keys[0] != "x" || keys[2] != "z" {
		t.Errorf("pages after the deletion hold %v, want x y z", keys)
	}
	// A listing begun after the deletion is not told of it.
	for next := (*string)(nil); ; {
		pg := list(next)
		if aws.BoolValue(pg.DatasetDeletedAfterRequestedSyncCount) {
			t.Errorf("listing begun after the deletion: %v", pg)
		}
		if next = pg.NextToken; next == nil {
			break
		}
	}
}
