package cognito

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateIDs(t *testing.T) {
	tests := []struct {
		id, wantErr string
	}{
		{"us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", ""},
		{"eu_west-1:abc", ""},
		{"", "must not be empty"},
		{"us-east-1:" + strings.Repeat("a", 46), "at most 55"},
		{"us-east-1", "does not match"},
		{":abc", "does not match"},
		{"us-east-1:", "does not match"},
		{"us-east-1:ABC", "does not match"},
		{"us east-1:abc", "does not match"},
		{"us-east-1:ab:c", "does not match"},
		{"../x:abc", "does not match"},
	}
	for _, tt := range tests {
		for _, check := range []struct {
			field string
			fn    func(string) error
		}{{"IdentityPoolId", ValidateIdentityPoolID}, {"IdentityId", ValidateIdentityID}} {
			err := check.fn(tt.id)
			assertFieldErr(t, check.field, tt.id, err, tt.wantErr)
		}
	}
}

func TestValidateDatasetName(t *testing.T) {
	tests := []struct{ name, wantErr string }{
		{"settings", ""},
		{"game.v2:level_1-a", ""},
		{strings.Repeat("x", 128), ""},
		{strings.Repeat("x", 129), "at most 128"},
		{"", "must not be empty"},
		{"a/b", "may hold only"},
		{"a b", "may hold only"},
		{"a*", "may hold only"},
		{"é", "may hold only"},
	}
	for _, tt := range tests {
		assertFieldErr(t, "DatasetName", tt.name, ValidateDatasetName(tt.name), tt.wantErr)
	}
}

func TestValidateDeviceID(t *testing.T) {
	tests := []struct{ id, wantErr string }{
		{"5cd28fbe-dd83-47ab-9f83-19093a5fb014", ""},
		{"", "must not be empty"},
		{strings.Repeat("d", 257), "at most 256"},
		{"a\nb", "control characters"},
		{"\xff", "valid UTF-8"},
	}
	for _, tt := range tests {
		assertFieldErr(t, "DeviceId", tt.id, ValidateDeviceID(tt.id), tt.wantErr)
	}
}

func assertFieldErr(t *testing.T, field, input string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%s %q: unexpected error %v", field, input, err)
		}
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("%s %q: got %v, want a *FieldError containing %q", field, input, err, want)
	}
	if fe.Field != field || !strings.Contains(fe.Error(), want) {
		t.Errorf("%s %q: got %q (field %s), want it to contain %q", field, input, fe.Error(), fe.Field, want)
	}
}
