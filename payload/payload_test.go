package payload_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushsync/pushsync/payload"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var change = payload.Change{
	IdentityPoolID: "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
	IdentityID:     "us-east-1:11111111-2222-3333-4444-555555555555",
	DatasetName:    "game.settings:v2",
	SyncCount:      42,
}

var expiration = time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./payload -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n got %s\nwant %s", name, got, want)
	}
}

func TestAPNsGolden(t *testing.T) {
	n, err := payload.APNs(change, "com.example.game", expiration)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "apns_background.json", n.Payload)
	headers := fmt.Sprintf("apns-push-type: %s\napns-priority: %d\napns-topic: %s\napns-collapse-id: %s\napns-expiration: %d\n",
		n.PushType, n.Priority, n.Topic, n.CollapseID, n.Expiration.Unix())
	golden(t, "apns_background.headers", []byte(headers))

	// The payload is valid JSON with exactly the documented shape.
	var doc struct {
		Aps  map[string]any `json:"aps"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(n.Payload, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Aps) != 1 || doc.Aps["content-available"] != float64(1) {
		t.Errorf("aps must hold only content-available 1: %v", doc.Aps)
	}
	if len(doc.Data) != 5 || doc.Data["syncCount"] != float64(42) || doc.Data["source"] != "cognito-sync" {
		t.Errorf("data: %v", doc.Data)
	}
}

func TestFCMGolden(t *testing.T) {
	m, err := payload.FCM(change, "fcm-registration-token", payload.FCMPriorityNormal, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := json.Marshal(m) // the SDK's own wire form of the message
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "fcm_data.json", wire)
	if m.Notification != nil || m.APNS != nil || m.Webpush != nil {
		t.Errorf("message must be data only: %+v", m)
	}
	if m.Data["syncCount"] != "42" {
		t.Errorf("syncCount must be the decimal string 42, got %q", m.Data["syncCount"])
	}
}

func TestStringsAreEscaped(t *testing.T) {
	// The builders do not assume validated input: any string yields valid
	// JSON that decodes to the same string.
	odd := payload.Change{IdentityPoolID: "p\"\\\n\t\x01é\u2028", IdentityID: "\xff", DatasetName: "d", SyncCount: 1}
	n, err := payload.APNs(odd, "t", expiration)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Data map[string]any }
	if err := json.Unmarshal(n.Payload, &doc); err != nil {
		t.Fatalf("invalid JSON %s: %v", n.Payload, err)
	}
	if doc.Data["identityPoolId"] != odd.IdentityPoolID || doc.Data["identityId"] != "\ufffd" {
		t.Errorf("round trip: %q", doc.Data)
	}
}

func TestSizeLimits(t *testing.T) {
	big := change
	big.DatasetName = strings.Repeat("d", 4000)
	if _, err := payload.APNs(big, "t", expiration); !errors.Is(err, payload.ErrTooLarge) {
		t.Errorf("APNs: got %v, want ErrTooLarge", err)
	}
	if _, err := payload.FCM(big, "tok", "", time.Hour); !errors.Is(err, payload.ErrTooLarge) {
		t.Errorf("FCM: got %v, want ErrTooLarge", err)
	}
	// Right at the limit is accepted.
	n, _ := payload.APNs(change, "t", expiration)
	fit := change
	fit.DatasetName += strings.Repeat("x", payload.MaxAPNsPayload-len(n.Payload))
	if n, err := payload.APNs(fit, "t", expiration); err != nil || len(n.Payload) != payload.MaxAPNsPayload {
		t.Errorf("payload of exactly %d bytes: %d, %v", payload.MaxAPNsPayload, len(n.Payload), err)
	}
}

func TestCollapseID(t *testing.T) {
	short := "settings"
	if got := payload.CollapseID(short); got != short {
		t.Errorf("short name: %q", got)
	}
	a := strings.Repeat("a", 100) + "1"
	b := strings.Repeat("a", 100) + "2"
	ca, cb := payload.CollapseID(a), payload.CollapseID(b)
	if len(ca) > payload.MaxCollapseID || ca == cb || payload.CollapseID(a) != ca {
		t.Errorf("long names: %q %q", ca, cb)
	}
}

func BenchmarkAPNs(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := payload.APNs(change, "com.example.game", expiration); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFCM(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := payload.FCM(change, "token", payload.FCMPriorityNormal, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
