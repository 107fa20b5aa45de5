package config

import "testing"

func TestStoreBoundSettings(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		env  []string
		want string // the error; "" for none
	}{
		{yaml: "api:\n  max_tombstones: 1024\n  max_deleted_datasets: 20\n"},
		{env: []string{"PUSHSYNC_API_MAX_TOMBSTONES=1048576", "PUSHSYNC_API_MAX_DELETED_DATASETS=10000"}},
		{yaml: "api:\n  max_tombstones: 100\n", want: "config: api.max_tombstones: must be between 1024 and 1048576, got 100"},
		{yaml: "api:\n  max_tombstones: 0\n", want: "config: api.max_tombstones: must be between 1024 and 1048576, got 0"},
		{env: []string{"PUSHSYNC_API_MAX_DELETED_DATASETS=19"}, want: "config: api.max_deleted_datasets: must be between 20 and 10000, got 19"},
		{yaml: "api:\n  max_deleted_datasets: 10001\n", want: "config: api.max_deleted_datasets: must be between 20 and 10000, got 10001"},
	} {
		c := parseWant(t, tc.yaml, tc.env, tc.want)
		if c != nil && tc.env != nil && (c.API.MaxTombstones != 1<<20 || c.API.MaxDeletedDatasets != 10000) {
			t.Errorf("%q: max_tombstones %d, max_deleted_datasets %d", tc.env, c.API.MaxTombstones, c.API.MaxDeletedDatasets)
		}
	}
}
