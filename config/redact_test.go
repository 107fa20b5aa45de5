package config

import "testing"

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:pw@nats-1:4222", "nats://redacted@nats-1:4222"},
		{"nats://token@nats-1:4222", "nats://redacted@nats-1:4222"},
		{"nats://user:p@ss@[::1", "nats://redacted@[::1"}, // does not parse as a URL
		{"user:pw@redis:6379", "redacted@redis:6379"},
		{"https://fcm.example.com/v1?key=abc#x", "https://fcm.example.com/v1?redacted"},
		{"https://fcm.example.com/v1/a@b", "https://fcm.example.com/v1/a@b"}, // an @ in the path is no credential
		{"", ""},
	} {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
