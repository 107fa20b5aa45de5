package registry_test

import (
	"strings"
	"testing"

	"github.com/pushsync/pushsync/registry"
)

// TestAPNsTokenErrorsSayWhatIsWrong checks that a refused APNs token is
// refused for what is wrong with it, not for a length it has.
func TestAPNsTokenErrorsSayWhatIsWrong(t *testing.T) {
	fcmToken := "cXyZ0123456789:APA91b" + strings.Repeat("Ab-_", 32) // 149 characters
	tests := []struct {
		name, token string
		want        []string
		notWant     string
	}{
		{"an FCM token", fcmToken, []string{`'X'`, "hex digits", "GCM"}, "got 149"},
		{"a letter beyond f", "g" + apnsToken[1:], []string{`'g'`}, "got 64"},
		{"an odd length", apnsToken + "a", []string{"even number", "got 65"}, ""},
		{"too short", apnsToken[:10], []string{"64 to 200 hex digits", "got 10"}, ""},
	}
	for _, tt := range tests {
		_, err := registry.NormalizeToken(registry.APNS, tt.token)
		if err == nil {
			t.Errorf("%s: accepted", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tt.name, err, w)
			}
		}
		if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
			t.Errorf("%s: %q says %q, which is no fault of the token", tt.name, err, tt.notWant)
		}
	}
}
