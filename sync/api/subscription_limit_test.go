//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

// TestSubscriptionsPerDeviceLimit subscribes one device, with identity
// credentials, to more datasets than a device may be subscribed to: the
// one beyond the limit is a LimitExceededException, and the device's
// record stops growing.
func TestSubscriptionsPerDeviceLimit(t *testing.T) {
	f := newFixture(t)
	f.configure()
	c := f.identity(alice)
	reg, err := c.RegisterDevice(&cognitosync.RegisterDeviceInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice), Platform: aws.String("GCM"), Token: aws.String("fcm-many")})
	if err != nil {
		t.Fatal(err)
	}
	subscribe := func(dataset string) error {
		_, err := c.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{IdentityPoolId: aws.String(pool), IdentityId: aws.String(alice),
			DatasetName: aws.String(dataset), DeviceId: reg.DeviceId})
		return err
	}
	for i := range 100 {
		if err := subscribe(fmt.Sprintf("dataset-%03d", i)); err != nil {
			t.Fatalf("subscription %d: %v", i+1, err)
		}
	}
	err = subscribe("dataset-100")
	expectErr(t, "subscription 101", err, "LimitExceededException", 400)
	if err == nil || !strings.Contains(err.Error(), "100 datasets") {
		t.Errorf("subscription 101: %v, want a message naming the limit", err)
	}
	if err := subscribe("dataset-042"); err != nil {
		t.Errorf("subscribing again at the limit: %v", err)
	}
}
