// Package cognito holds the identifier rules of the Amazon Cognito Sync API
// that every part of pushsync agrees on: what a valid identity pool id,
// identity id, dataset name and device id look like.
//
// The rules are those of the Cognito Sync service model (API version
// 2014-06-30): IdentityPoolId and IdentityId are 1 to 55 characters matching
// [\w-]+:[0-9a-f-]+, DatasetName is 1 to 128 characters of [a-zA-Z0-9_.:-]
// and DeviceId is 1 to 256 characters.
package cognito

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Source is the value of the "source" key of every push sync notification,
// as Amazon Cognito sent it.
const Source = "cognito-sync"

// Limits from the Cognito Sync service model.
const (
	MaxIDLen          = 55
	MaxDatasetNameLen = 128
	MaxDeviceIDLen    = 256
)

// FieldError reports a value that breaks one of the identifier rules. Field
// is the member name as the Cognito API spells it (IdentityPoolId, …).
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidateIdentityPoolID checks an identity pool id such as
// "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".
func ValidateIdentityPoolID(id string) error { return validateID("IdentityPoolId", id) }

// ValidateIdentityID checks an identity id; it has the same form as a pool id.
func ValidateIdentityID(id string) error { return validateID("IdentityId", id) }

func validateID(field, id string) error {
	if id == "" {
		return &FieldError{field, "must not be empty"}
	}
	if len(id) > MaxIDLen {
		return &FieldError{field, fmt.Sprintf("must be at most %d characters, got %d", MaxIDLen, len(id))}
	}
	colon := -1
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c == ':' && colon < 0:
			colon = i
		case colon < 0 && (isAlnum(c) || c == '_' || c == '-'):
		case colon >= 0 && (isDigit(c) || (c >= 'a' && c <= 'f') || c == '-'):
		default:
			return &FieldError{field, fmt.Sprintf("%q does not match [\\w-]+:[0-9a-f-]+", id)}
		}
	}
	if colon <= 0 || colon == len(id)-1 {
		return &FieldError{field, fmt.Sprintf("%q does not match [\\w-]+:[0-9a-f-]+", id)}
	}
	return nil
}

// ValidateDatasetName checks a dataset name: 1 to 128 characters of
// letters, digits, '_', '.', ':' and '-'.
func ValidateDatasetName(name string) error {
	if name == "" {
		return &FieldError{"DatasetName", "must not be empty"}
	}
	if len(name) > MaxDatasetNameLen {
		return &FieldError{"DatasetName", fmt.Sprintf("must be at most %d characters, got %d", MaxDatasetNameLen, len(name))}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != ':' && c != '-' {
			return &FieldError{"DatasetName", fmt.Sprintf("%q may hold only letters, digits, '_', '.', ':' and '-'", name)}
		}
	}
	return nil
}

// ValidateDeviceID checks a device id: 1 to 256 characters of printable
// UTF-8 text.
func ValidateDeviceID(id string) error {
	if id == "" {
		return &FieldError{"DeviceId", "must not be empty"}
	}
	if len(id) > MaxDeviceIDLen {
		return &FieldError{"DeviceId", fmt.Sprintf("must be at most %d characters, got %d", MaxDeviceIDLen, len(id))}
	}
	if !utf8.ValidString(id) {
		return &FieldError{"DeviceId", "must be valid UTF-8"}
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return &FieldError{"DeviceId", "must not contain control characters"}
		}
	}
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// HashTag returns the Redis Cluster hash tag shared by every key of one
// identity, so that all of them live in one slot and one Lua script or
// transaction can touch them together. Pool and identity ids cannot hold
// '/', '{' or '}', so the tag is unambiguous.
func HashTag(poolID, identityID string) string {
	return "{" + poolID + "/" + identityID + "}"
}

// EscapeGlob escapes the characters that are special in a Redis SCAN MATCH
// pattern, for matching keys under a literal prefix.
func EscapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
