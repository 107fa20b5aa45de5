package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
)

// TestDocumentedFCMTokensAreAccepted checks that every FCM registration
// token the documents register (pushsyncctl device register -platform GCM
// -token T) looks like one FCM issues. The FCM emulator refuses any other as
// an invalid registration token, as FCM does, and pushsync then removes the
// device: following the example would lose the device at its first push.
func TestDocumentedFCMTokensAreAccepted(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, filepath.Join(root, "README.md"))
	re := regexp.MustCompile(`-platform\s+GCM\s+-token\s+(\S+)`)
	found := 0
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			found++
			tok := strings.TrimRight(m[1], ")`")
			if !wellFormedFCMToken(tok) {
				t.Errorf("%s: FCM token %q: FCM (and pushemu) refuse it; a registration token is %d or more of A-Z a-z 0-9 - _ :",
					doc, tok, fcmtest.MinTokenLength)
			}
		}
	}
	if found == 0 {
		t.Fatal("no document registers a GCM device with pushsyncctl")
	}
}

// wellFormedFCMToken reports whether tok passes the FCM emulator's token
// check (fcmtest.WithTokenCheck).
func wellFormedFCMToken(tok string) bool {
	return len(tok) >= fcmtest.MinTokenLength && regexp.MustCompile(`^[A-Za-z0-9_:-]+$`).MatchString(tok)
}
