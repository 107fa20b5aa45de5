package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestAppListAfterTheMasterKeyIsLost lists the apps of a deployment that
// lost the master key that sealed them: the list still shows every app,
// with the ones no key opens marked and how to recover them.
func TestAppListAfterTheMasterKeyIsLost(t *testing.T) {
	d := startDaemon(t)
	d.apnsKey("key.p8", "KEY1234567")
	d.serviceAccount("sa.json")
	d.ctl("app", "create", "-name", "game-ios", "-apns-topic", topic, "-apns-key-file", "key.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)
	d.ctl("app", "create", "-name", "game-android", "-fcm-project", project, "-fcm-service-account-file", "sa.json")

	d.restart(fmt.Sprintf("{master_key: %q}", newMasterKey))
	d.ctl("app", "rotate", "game-ios", "-apns-topic", topic, "-apns-key-file", "key.p8", "-apns-key-id", "KEY1234567", "-apns-team-id", team)
	out := d.ctl("app", "list")
	lines := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			lines[f[0]] = line
		}
	}
	if l := lines["game-android"]; !strings.Contains(l, "unreadable") || !strings.Contains(l, "app rotate") {
		t.Errorf("game-android, sealed under the lost key, in app list:\n%s", out)
	}
	// Its update time is sealed with it: unknown, not the year 1.
	if l := lines["game-android"]; strings.Contains(l, "0001-01-01") || !strings.HasSuffix(strings.TrimSpace(l), " -") {
		t.Errorf("game-android, sealed under the lost key, in app list: want - for its unknown update time:\n%s", out)
	}
	if l := lines["game-ios"]; !strings.Contains(l, "topic "+topic) || strings.Contains(l, "unreadable") {
		t.Errorf("game-ios, registered again, in app list:\n%s", out)
	}
	d.ctlFail(d.env, 1, []string{"InvalidConfigurationException", "game-android", "master key", "app rotate"}, "app", "show", "game-android")
}
